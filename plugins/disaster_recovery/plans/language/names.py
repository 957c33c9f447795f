"""Constrained string types of the plan language: slugs, connection ids, paths, e-mail addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema


@dataclass(frozen=True)
class NamePattern:
    """Annotation marker: the string must match ``pattern`` and be at most ``max_length`` long."""

    pattern: str
    max_length: int
    what: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        compiled = re.compile(self.pattern)

        def check(value: str) -> str:
            if len(value) > self.max_length or not compiled.match(value):
                raise PydanticCustomError("invalid_name", f"{value!r} is not {self.what}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "pattern": self.pattern, "maxLength": self.max_length, "description": self.what}


_SLUG = r"^[a-z][a-z0-9_-]*$"
_SLUG_WHAT = "lowercase letters, digits, '-' and '_', starting with a letter"

PlanName = Annotated[str, NamePattern(_SLUG, max_length=100, what=f"a valid plan name ({_SLUG_WHAT}; at most 100)")]
StepName = Annotated[str, NamePattern(_SLUG, max_length=100, what=f"a valid step name ({_SLUG_WHAT}; at most 100)")]
GroupName = Annotated[
    str, NamePattern(_SLUG, max_length=50, what=f"a valid parallel group name ({_SLUG_WHAT}; at most 50)")
]
SourceName = Annotated[
    str, NamePattern(_SLUG, max_length=100, what=f"a valid data source name ({_SLUG_WHAT}; at most 100)")
]
ServiceName = Annotated[
    str,
    NamePattern(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=100,
        what="a valid service name (letters, digits, '.', '-' and '_'; at most 100)",
    ),
]
ClusterRef = Annotated[
    str,
    NamePattern(
        r"^[a-z][a-z0-9_-]*$",
        max_length=63,
        what="a cluster name from include/clusters.yaml (lowercase letters, digits, '-' and '_')",
    ),
]
ConnId = Annotated[
    str,
    NamePattern(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=250,
        what="an Airflow connection id (letters, digits, '.', '-' and '_')",
    ),
]
Tag = Annotated[
    str,
    NamePattern(
        r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
        max_length=100,
        what="a valid tag (letters, digits, '.', ':', '/', '-' and '_'; at most 100)",
    ),
]
Version = Annotated[
    str,
    NamePattern(
        r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$",
        max_length=20,
        what="a valid version such as '1.0' (quote it in YAML; at most 20 characters)",
    ),
]
EmailAddress = Annotated[str, NamePattern(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254, what="an e-mail address")]
PgIdentifier = Annotated[
    str,
    NamePattern(
        r"^[a-z_][a-z0-9_]*$",
        max_length=63,
        what="a PostgreSQL name (lowercase letters, digits and '_'; at most 63)",
    ),
]


def _absolute_path(value: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or value.rstrip("/") == "" or ".." in parts:
        raise PydanticCustomError("invalid_path", f"{value!r} is not an absolute path below '/' without '..'")
    return value


AbsolutePath = Annotated[
    str,
    AfterValidator(_absolute_path),
    WithJsonSchema({"type": "string", "pattern": "^/.", "description": "an absolute path"}),
]
