"""docker-compose.yml and the Dockerfile are consistent with the repository (Docker is not run here:
there is no compose plugin nor registry access on this machine; this checks their structure)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_celery_deployment_has_every_airflow_component():
    services = compose()["services"]
    assert {"postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-worker", "airflow-triggerer"} <= set(services)
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "dr_catalog" in env["AIRFLOW_CONN_DR_CATALOG"]
    assert "catalog migrate --conn-id dr_catalog" in services["airflow-init"]["command"][1]


def test_mounted_folders_exist_and_image_builds_from_our_dockerfile():
    common = compose()["services"]["airflow-worker"]
    for volume in common["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).is_dir(), source
    assert common["build"] == "."
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "postgresql-15" in dockerfile


def test_passwords_file_is_on_a_volume_every_component_shares():
    services = compose()["services"]
    path = services["airflow-apiserver"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    folder = str(Path(path).parent)
    for name in ("airflow-init", "airflow-apiserver"):
        assert any(v.endswith(":" + folder) for v in services[name]["volumes"]), name
