"""The lab's Airflow environment: LATENCY_SETTINGS by default, Airflow's own defaults when switched off
(a benchmark's baseline), and the config's extra environment over both."""

from __future__ import annotations

import json

import pytest

from disaster_recovery.lab.stack import LATENCY_SETTINGS, Lab


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Lab:
    for key in LATENCY_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    return Lab(tmp_path / "lab", auto_ports=True)


def test_latency_settings_are_on_by_default(lab):
    env = lab.airflow_env()
    assert lab.config.latency_settings is True
    assert {key: env[key] for key in LATENCY_SETTINGS} == LATENCY_SETTINGS


def test_switched_off_leaves_airflow_defaults_and_is_remembered(lab, tmp_path):
    lab.config.latency_settings = False
    lab.config.save()
    again = Lab(tmp_path / "lab", auto_ports=True)
    assert again.config.latency_settings is False
    env = again.airflow_env()
    assert not set(LATENCY_SETTINGS) & set(env)


def test_extra_env_wins_over_the_settings(lab):
    lab.config.env = {"DR_PLANS_DIR": "/somewhere/plans", "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5"}
    env = lab.airflow_env()
    assert env["DR_PLANS_DIR"] == "/somewhere/plans"
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.5"


def test_a_lab_json_from_before_the_option_keeps_the_settings(tmp_path):
    home = tmp_path / "lab"
    Lab(home, auto_ports=True)
    data = json.loads((home / "lab.json").read_text())
    del data["latency_settings"]
    (home / "lab.json").write_text(json.dumps(data))
    assert Lab(home, auto_ports=True).config.latency_settings is True
