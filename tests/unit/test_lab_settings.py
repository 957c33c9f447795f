"""The lab's Airflow environment: LATENCY_SETTINGS by default, Airflow's own defaults when switched off
(a benchmark's baseline), and the config's extra environment over both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from disaster_recovery.lab.stack import LATENCY_SETTINGS, REPO, Lab


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


def test_the_lab_shares_a_secrets_cache_with_its_task_processes():
    assert LATENCY_SETTINGS["AIRFLOW__SECRETS__USE_CACHE"] == "True"
    assert int(LATENCY_SETTINGS["AIRFLOW__SECRETS__CACHE_TTL_SECONDS"]) > 0


# Run in a process of its own: the cache is a multiprocessing manager, whose socket folder goes only
# when the process that started it exits.
FORKED_CHILD_READS_THE_CACHE = textwrap.dedent(
    """
    import os
    from airflow.sdk.execution_time.cache import SecretCache
    from disaster_recovery.orchestration.executor import share_secret_cache

    assert share_secret_cache()
    SecretCache.save_connection_uri("dr_catalog", "postgres://u:p@127.0.0.1:5/dr_catalog")
    parent_connection = SecretCache._cache._tls.connection
    read, write = os.pipe()
    pid = os.fork()  # a bare fork, as the supervisor makes task processes
    if pid == 0:
        try:
            fresh = getattr(SecretCache._cache._tls, "connection", None) is None
            seen = SecretCache.get_connection_uri("dr_catalog")
            own = SecretCache._cache._tls.connection is not parent_connection
            os.write(write, b"ok" if fresh and own and seen.endswith("/dr_catalog") else b"no")
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 2).decode()
    os.waitpid(pid, 0)
    print(child, SecretCache.get_connection_uri("dr_catalog"))

    # The task SDK's message decoder: built once, shared by every CommsDecoder, still decoding.
    import socket
    from airflow.sdk.execution_time.comms import CommsDecoder, ErrorResponse
    from disaster_recovery.orchestration.executor import share_comms_decoder

    assert share_comms_decoder()
    ends = socket.socketpair()
    first, second = CommsDecoder(log=None, socket=ends[0]), CommsDecoder(log=None, socket=ends[1])
    assert first.body_decoder is second.body_decoder is first.err_decoder
    decoded = first.body_decoder.validate_python({"type": "ErrorResponse", "error": "CONNECTION_NOT_FOUND", "detail": {}})
    print(type(decoded).__name__)
    """
)


def test_forked_task_processes_share_the_cache_and_the_decoder():
    """A connection saved by one process is read by a bare os.fork child, which talks to the cache over a
    connection of its own, not its parent's socket; the parent's still works afterwards. The shared
    message decoder is one object for every CommsDecoder and decodes as pydantic's own does."""
    env = dict(os.environ, AIRFLOW__SECRETS__USE_CACHE="True", PYTHONPATH=str(REPO / "plugins"))
    proc = subprocess.run([sys.executable, "-c", FORKED_CHILD_READS_THE_CACHE], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", "postgres://u:p@127.0.0.1:5/dr_catalog", "ErrorResponse"]


def test_without_use_cache_there_is_no_shared_cache(monkeypatch):
    from airflow.sdk.execution_time.cache import SecretCache

    from disaster_recovery.orchestration.executor import share_secret_cache

    monkeypatch.setenv("AIRFLOW__SECRETS__USE_CACHE", "False")
    SecretCache.reset()
    assert not share_secret_cache()
