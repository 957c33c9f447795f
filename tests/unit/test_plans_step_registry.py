import pytest

from disaster_recovery.plans import StepType
from disaster_recovery.steps import registry


@pytest.fixture
def restore_registry():
    saved = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(saved)


def test_step_type_names_match_the_plan_language():
    assert {t.value for t in StepType} == registry.STEP_TYPE_NAMES


def test_builtins_are_registered_lazily():
    assert {"database_failover", "validation", "notification"} <= registry.implemented_step_types()
    assert registry.step_type_target("validation") == "disaster_recovery.steps.validation:ValidationStep"


def test_register_and_load_a_custom_step_class(restore_registry):
    registry.register_step_type("cleanup", "collections:OrderedDict")
    assert "cleanup" in registry.implemented_step_types()
    import collections

    assert registry.load_step_class("cleanup") is collections.OrderedDict


def test_registration_errors(restore_registry):
    with pytest.raises(ValueError, match="unknown step type 'dns_updat'"):
        registry.register_step_type("dns_updat", "x:Y")
    with pytest.raises(ValueError, match="not of the form 'module.path:ClassName'"):
        registry.register_step_type("cleanup", "x.Y")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_step_type("validation", "x:Y")
    registry.register_step_type("validation", "x:Y", replace=True)
    assert registry.step_type_target("validation") == "x:Y"


def test_unimplemented_lookup_and_bad_targets(restore_registry):
    registry.unregister_step_type("cleanup")
    with pytest.raises(LookupError, match="step type 'cleanup' is not implemented"):
        registry.load_step_class("cleanup")
    registry.register_step_type("cleanup", "collections:NoSuchClass")
    with pytest.raises(ImportError, match="has no class 'NoSuchClass'"):
        registry.load_step_class("cleanup")
    registry.register_step_type("cleanup", "collections:namedtuple", replace=True)
    with pytest.raises(TypeError, match="is not a class"):
        registry.load_step_class("cleanup")
