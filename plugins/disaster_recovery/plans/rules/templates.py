"""Notice templates (Jinja, rendered in a sandbox): checked when a plan is validated, strict when rendered.

A template may use exactly the names of a notice (``NOTICE_NAMES``); every notice carries all of them
(None where they do not apply), so a template that validated never meets an undefined name at run time
except through an attribute or item of one (``{{ plan_name.x }}``), which fails the step clearly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

NOTICE_NAMES = frozenset(
    {"plan_name", "step_name", "execution_id", "event", "status", "summary", "message", "dry_run", "try_number"}
)
"""The names a notice template may use."""

_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True, undefined=StrictUndefined)


class TemplateRenderError(ValueError):
    """A template could not be rendered; ``field`` says which (``channels[0].subject``), the message why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"field {field!r}: {message}")


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a valid notice template, or None."""
    try:
        ast = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        return f"the template does not parse (line {exc.lineno}): {exc.message}"
    unknown = sorted(meta.find_undeclared_variables(ast) - NOTICE_NAMES)
    if unknown:
        return (f"the template uses unknown name(s) {', '.join(unknown)}; a notice knows: "
                f"{', '.join(sorted(NOTICE_NAMES))}")
    return None


def template_strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside a JSON-like value (a webhook payload), with its path; iterative."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, Mapping):
            stack.extend(((*where, str(k)), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(item))))


def render_template(text: str, context: Mapping[str, Any], *, field: str) -> str:
    """Render in the sandbox; TemplateRenderError naming ``field`` and the undefined name or the reason."""
    notice = {name: None for name in NOTICE_NAMES} | dict(context)
    try:
        return _ENV.from_string(text).render(**notice)
    except UndefinedError as exc:
        raise TemplateRenderError(field, f"undefined name in the template: {exc.message}") from None
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(field, f"the template does not parse (line {exc.lineno}): {exc.message}") from None
    except SecurityError as exc:
        raise TemplateRenderError(field, f"the template did something the sandbox forbids: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a template's own error (1/0, a bad filter argument)
        raise TemplateRenderError(field, f"the template failed: {type(exc).__name__}: {exc}") from None


def render_templates(value: Any, context: Mapping[str, Any], *, field: str) -> Any:
    """Render every string inside a JSON-like value (a webhook payload)."""
    if isinstance(value, str):
        return render_template(value, context, field=field)
    if isinstance(value, Mapping):
        return {k: render_templates(v, context, field=f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_templates(v, context, field=f"{field}[{i}]") for i, v in enumerate(value)]
    return value
