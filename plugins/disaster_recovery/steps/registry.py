"""Which step types this installation can run, and where their executors live.

Registrations are lazy ("module.path:ClassName" strings): importing this module imports nothing
heavy, so plan validation (and the CLI) can ask ``implemented_step_types()`` without Airflow.
A custom executor registers itself exactly like the built-ins below.
"""

from __future__ import annotations

import importlib
import re

STEP_TYPE_NAMES = frozenset(
    {
        "backup_restore",
        "service_start",
        "dns_update",
        "load_balancer_config",
        "database_failover",
        "validation",
        "notification",
        "cleanup",
    }
)
"""The plan language's step types (``disaster_recovery.plans.StepType``; kept in sync by a test)."""

_TARGET_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_registry: dict[str, str] = {}


def register_step_type(type_name: str, target: str, *, replace: bool = False) -> None:
    """Register the executor class of a step type as ``"module.path:ClassName"``.

    Registering a type a second time with another target needs ``replace=True``.
    """
    if type_name not in STEP_TYPE_NAMES:
        raise ValueError(f"unknown step type {type_name!r}; expected one of: {', '.join(sorted(STEP_TYPE_NAMES))}")
    if not _TARGET_RE.match(target):
        raise ValueError(f"target {target!r} is not of the form 'module.path:ClassName'")
    current = _registry.get(type_name)
    if current is not None and current != target and not replace:
        raise ValueError(f"step type {type_name!r} is already registered to {current!r}")
    _registry[type_name] = target


def unregister_step_type(type_name: str) -> None:
    _registry.pop(type_name, None)


def implemented_step_types() -> frozenset[str]:
    """The step types with a registered executor."""
    return frozenset(_registry)


def step_type_target(type_name: str) -> str:
    """The ``"module:Class"`` registered for a step type; LookupError if none."""
    try:
        return _registry[type_name]
    except KeyError:
        raise LookupError(
            f"step type {type_name!r} is not implemented; implemented: {', '.join(sorted(_registry)) or 'none'}"
        ) from None


def load_step_class(type_name: str) -> type:
    """Import and return the executor class of a step type."""
    module_name, _, class_name = step_type_target(type_name).partition(":")
    module = importlib.import_module(module_name)
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no class {class_name!r} (step type {type_name!r})") from None
    if not isinstance(cls, type):
        raise TypeError(f"{module_name}:{class_name} is not a class (step type {type_name!r})")
    return cls


# Built-in executors, registered the same way a custom one would be.
register_step_type("database_failover", "disaster_recovery.steps.database_failover:DatabaseFailoverStep")
register_step_type("validation", "disaster_recovery.steps.validation:ValidationStep")
register_step_type("notification", "disaster_recovery.steps.notification:NotificationStep")
register_step_type("backup_restore", "disaster_recovery.steps.backup_restore:BackupRestoreStep")
