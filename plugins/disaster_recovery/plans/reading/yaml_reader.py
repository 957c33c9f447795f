"""Reading our YAML files (plans, clusters, services, backup sources) so that no file can hurt the reader.

Rules, whatever the input:
  - a file over ``MAX_FILE_BYTES`` is refused unread; text must be UTF-8;
  - YAML is composed first (libyaml when PyYAML has it) and its shape measured (``bounds``): too deep,
    too large once aliases and merge keys are expanded, or recursive, is refused before anything is built;
  - a duplicate key is an error (YAML would silently keep the last one); merge keys (``<<: *defaults``)
    still work and a key written beside a merge overrides it, as YAML says;
  - dates and times stay text (``2025-13-45`` would make PyYAML raise, ``2025-01-31`` would become a
    ``date`` and be judged twice): the models parse them and name the field when they are wrong;
  - every failure becomes a ``PlanValidationError`` naming the file; nothing else leaves ``read_yaml_file``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from disaster_recovery.plans.reading.bounds import MAX_FILE_BYTES, BoundsExceeded, check_yaml_node
from disaster_recovery.plans.reading.problems import PlanProblem, PlanValidationError

# libyaml's parser when PyYAML was built with it (about 10x faster: DAG files parse every plan).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class StrictLoader(_SafeLoader):
    """SafeLoader that refuses duplicate keys and keeps dates and times as text."""


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be text, not a {type(key).__name__}", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=deep)


def _construct_timestamp_as_text(loader: StrictLoader, node: yaml.ScalarNode) -> str:
    return loader.construct_scalar(node)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
StrictLoader.add_constructor(_TIMESTAMP_TAG, _construct_timestamp_as_text)


def _problem(file: str, message: str) -> PlanValidationError:
    return PlanValidationError([PlanProblem(file, None, None, message)])


def _read_text(path: str | Path, *, file: str) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _problem(file, f"cannot read the file: {exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _problem(file, f"the file is larger than {MAX_FILE_BYTES:,} bytes; refused unread")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(file, f"cannot read the file: not UTF-8 text ({exc})") from None


def parse_yaml_text(text: str, *, file: str = "<yaml>") -> Any:
    """The data of one YAML document; PlanValidationError (naming ``file``) for anything wrong."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        check_yaml_node(node)
        return None if node is None else loader.construct_document(node)
    except BoundsExceeded as exc:
        raise _problem(file, f"refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise _problem(file, _yaml_message(exc)) from None
    except RecursionError:
        raise _problem(file, "refused: the YAML is nested too deeply to read") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values they cannot build (e.g. an int of 5,000 digits).
        raise _problem(file, f"invalid YAML value: {exc}") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path) -> Any:
    """The YAML content of a file; raise PlanValidationError for an unreadable, hostile or invalid file."""
    file = str(path)
    return parse_yaml_text(_read_text(path, file=file), file=file)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = ", ".join(p for p in (exc.context, exc.problem) if p)
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"invalid YAML: {exc}"
