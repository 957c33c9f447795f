"""The base of every plan model: frozen, no unknown keys, and no secrets."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from disaster_recovery.plans.rules.secret_keys import looks_like_secret_key, secret_key_message

Loc = tuple[str | int, ...]


def raise_problems(title: str, problems: Iterable[tuple[Loc, str, Any]]) -> None:
    """Raise one ValidationError carrying each ``(loc, message, input)``; locs are relative."""
    details = [
        InitErrorDetails(type=PydanticCustomError("plan_rule", message), loc=loc, input=value)
        for loc, message, value in problems
    ]
    if details:
        raise ValidationError.from_exception_data(title, details)


class PlanModel(BaseModel):
    """Frozen; an unknown key is an error naming the key (and a secret-looking key says why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        problems: list[tuple[Loc, str, Any]] = []
        for key, value in data.items():
            if isinstance(key, str) and key in fields:
                continue
            problems.append(((str(key),), cls._unknown_key_message(key), value))
        raise_problems(cls.__name__, problems)
        return data

    @classmethod
    def _unknown_key_message(cls, key: object) -> str:
        fields = list(cls.model_fields)
        if not isinstance(key, str):
            return (
                f"key {key!r} is not a string (YAML reads unquoted on/off/yes/no/true/false as booleans: quote the key)"
            )
        if looks_like_secret_key(key):
            return secret_key_message(key, (f for f in fields if f.endswith("conn_id")))
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
        if close:
            return f"unknown key {key!r}; did you mean {close[0]!r}?"
        return f"unknown key {key!r}; allowed keys: {', '.join(fields)}"
