import pytest

from disaster_recovery.plans import all_criteria_met, evaluate_criteria, resolve_path
from disaster_recovery.plans.rules.criteria import PathNotFound, criteria_spec_problems

RESULT = {
    "promoted": True,
    "lag_bytes": 1024,
    "status": "ok",
    "checks": [{"name": "a", "ok": True, "rows": 3}, {"name": "b", "ok": False, "rows": 0}],
    "nothing": None,
}


@pytest.mark.parametrize(
    ("operator", "value", "ok"),
    [
        (">", 1000, True),
        (">", 1024, False),
        ("<", 2000, True),
        ("<", 1024, False),
        (">=", 1024, True),
        (">=", 1025, False),
        ("<=", 1024, True),
        ("<=", 1023, False),
        ("==", 1024, True),
        ("==", 1024.0, True),
        ("==", 1, False),
        ("!=", 1, True),
        ("!=", 1024, False),
    ],
)
def test_operators(operator, value, ok):
    (result,) = evaluate_criteria({"lag_bytes": {"operator": operator, "value": value}}, RESULT)
    assert result.ok is ok
    assert (result.criterion, result.operator, result.expected, result.actual) == ("lag_bytes", operator, value, 1024)
    assert (result.message == "") is ok


def test_plain_value_means_equality():
    results = evaluate_criteria({"promoted": True, "status": "ok", "nothing": None}, RESULT)
    assert [r.ok for r in results] == [True, True, True]
    assert all(r.operator == "==" for r in results)
    assert all_criteria_met(results)


def test_equality_is_strict_about_booleans():
    assert not evaluate_criteria({"promoted": 1}, RESULT)[0].ok
    assert not evaluate_criteria({"checks.0.rows": {"operator": "==", "value": True}}, {"checks": [{"rows": 1}]})[0].ok
    assert evaluate_criteria({"promoted": {"operator": "!=", "value": 1}}, RESULT)[0].ok


def test_list_indexes_in_paths():
    results = evaluate_criteria(
        {"checks.0.ok": True, "checks.1.rows": {"operator": ">=", "value": 1}, "checks.-1.name": "b"}, RESULT
    )
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].actual == 0
    assert "expected checks.1.rows >= 1, got 0" in results[1].message
    assert not all_criteria_met(results)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("missing", "at the result: no key 'missing'"),
        ("checks.5.ok", "at checks: index 5 out of range (length 2)"),
        ("checks.first", "at checks: 'first' is not a list index"),
        ("status.length", "at status: str value has no 'length'"),
        ("checks.0.ok.deeper", "at checks.0.ok: bool value has no 'deeper'"),
    ],
)
def test_missing_path_is_not_ok_with_a_clear_message(path, why):
    (result,) = evaluate_criteria({path: 1}, RESULT)
    assert not result.ok
    assert result.actual is None
    assert result.message == f"path {path!r} not found: {why}"


def test_incomparable_values_are_not_ok():
    (result,) = evaluate_criteria({"status": {"operator": ">", "value": 3}}, RESULT)
    assert not result.ok and "cannot compare 'ok' > 3" in result.message
    (result,) = evaluate_criteria({"promoted": {"operator": ">=", "value": 0}}, RESULT)
    assert not result.ok and "cannot compare" in result.message


def test_unknown_operator_at_evaluation_is_not_ok():
    (result,) = evaluate_criteria({"lag_bytes": {"operator": "~", "value": 1}}, RESULT)
    assert not result.ok and "unknown operator" in result.message


def test_results_are_frozen_records():
    (result,) = evaluate_criteria({"promoted": True}, RESULT)
    with pytest.raises(AttributeError):
        result.ok = False
    assert result.as_dict() == {
        "criterion": "promoted",
        "operator": "==",
        "expected": True,
        "actual": True,
        "ok": True,
        "message": "",
    }


def test_no_criteria_hold_trivially():
    assert evaluate_criteria({}, RESULT) == []
    assert all_criteria_met([])


def test_resolve_path():
    assert resolve_path(RESULT, "checks.1.name") == "b"
    with pytest.raises(PathNotFound):
        resolve_path(RESULT, "checks.2")


def test_criteria_spec_problems():
    problems = dict(
        criteria_spec_problems(
            {
                "ok": True,
                "a..b": 1,
                "x": {"operator": "~", "value": 1},
                "y": {"operator": ">="},
                "z": {"operator": ">=", "value": 1, "unit": "s"},
            }
        )
    )
    assert set(problems) == {"a..b", "x", "y", "z"}
    assert "not a dotted path" in problems["a..b"]
    assert "unknown operator '~'" in problems["x"]
    assert "needs 'value'" in problems["y"]
    assert "unknown keys ['unit']" in problems["z"]
