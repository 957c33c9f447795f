"""include/clusters.yaml: the shipped file, file/field errors, its JSON Schema; standby config text; WAL loss."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from disaster_recovery.clusters.host.recovery_conf import conninfo, setting_in, with_standby_settings
from disaster_recovery.clusters.host.walloss import fork_point, parse_waldump
from disaster_recovery.clusters.model import DEFAULT_CLUSTERS_FILE, clusters_json_schema, load_clusters
from disaster_recovery.commands.clusters import clusters_json_schema_text

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "include" / "clusters.schema.json"


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_the_lab_cluster_loads(monkeypatch):
    monkeypatch.setenv("DR_LAB_HOME", "/srv/lab")
    monkeypatch.delenv("DR_CLUSTER_ROOT", raising=False)
    clusters = load_clusters(DEFAULT_CLUSTERS_FILE)
    assert clusters.ok, clusters.problems
    wedsync = clusters.require("wedsync")
    assert [m.member_name for m in wedsync.members] == ["wedsync_node1", "wedsync_node2"]
    assert wedsync.synchronous and wedsync.preferred_primary == "wedsync_node1"
    control = wedsync.members[0].control
    assert control.resolved_data_directory() == Path("/srv/lab/pg/wedsync_node1")
    monkeypatch.setenv("DR_CLUSTER_ROOT", "/data")
    assert control.resolved_data_directory() == Path("/data/pg/wedsync_node1")


def test_problems_name_file_cluster_and_field(tmp_path):
    path = write(tmp_path, {"clusters": [
        {"name": "good", "members": [{"conn_id": "g1"}]},
        {"name": "bad", "members": [
            {"conn_id": "n1", "password": "hunter2"},
            {"conn_id": "n2", "control": {"kind": "local", "data_directory": "../escape"}},
        ]},
        {"name": "twice", "preferred_primary": "nobody", "members": [{"conn_id": "n1"}, {"conn_id": "n1"}]},
        {"members": [{"conn_id": "x"}]},
    ]})
    clusters = load_clusters(path)
    assert list(clusters.items) == ["good"]  # one bad cluster hides no good one
    lines = [str(p) for p in clusters.problems]
    assert any(line.startswith(f"{path}: cluster 'bad' field 'members[0].password': key 'password' looks like a secret")
               for line in lines), lines
    assert f"{path}: cluster 'twice' field 'members[1].conn_id': connection 'n1' is also members[0]" in lines
    assert any("field 'members[1].control.data_directory'" in line and "'..'" in line for line in lines)
    assert any("field 'preferred_primary': 'nobody' is not a member" in line for line in lines)
    assert f"{path}: field 'clusters[3].name': required key is missing" in lines


def test_duplicate_names_and_bad_files_are_problems_not_exceptions(tmp_path):
    dup = load_clusters(write(tmp_path, {"clusters": [{"name": "a", "members": [{"conn_id": "x"}]}] * 2}))
    assert not dup.items and "cluster name 'a' is also used by clusters[1]" in str(dup.problems[0])
    assert "expected a mapping" in str(load_clusters(write(tmp_path, "- just a list\n")).problems[0])
    assert "invalid YAML" in str(load_clusters(write(tmp_path, "clusters: [\n")).problems[0])
    with pytest.raises(ValueError, match="no valid cluster of this name"):
        dup.require("a")


def test_member_names_default_to_the_conn_id_and_must_be_slot_names(tmp_path):
    clusters = load_clusters(write(tmp_path, {"clusters": [{"name": "c", "members": [
        {"conn_id": "Node-1.db"}, {"conn_id": "9lives"}]}]}))
    assert any("give a name: '9lives' does not start with a letter" in str(p) for p in clusters.problems)
    ok = load_clusters(write(tmp_path, {"clusters": [{"name": "c", "members": [{"conn_id": "Node-1.db"}]}]}))
    assert ok.require("c").members[0].member_name == "node_1_db"


def test_checked_in_schema_matches_the_model():
    assert SCHEMA_FILE.read_text() == clusters_json_schema_text(), (
        "regenerate: PYTHONPATH=plugins python -m disaster_recovery clusters schema -o include/clusters.schema.json")
    assert clusters_json_schema()["additionalProperties"] is False


def test_shipped_file_satisfies_its_schema():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert list(validator.iter_errors(yaml.safe_load(DEFAULT_CLUSTERS_FILE.read_text()))) == []


def test_standby_settings_replace_earlier_ones():
    before = ("# Do not edit\nprimary_conninfo = 'host=old'\nsynchronous_standby_names = 'ANY 1 (x)'\n"
              "default_transaction_read_only = 'on'\nprimary_slot_name = 'old'\n")
    info = conninfo(host="127.0.0.1", port=5433, user="postgres", password="it's a \\secret",
                    application_name="node1")
    after = with_standby_settings(before, primary_conninfo=info, slot_name="node1")
    assert "host=old" not in after and "ANY 1" not in after
    assert "default_transaction_read_only = 'on'" in after
    assert setting_in(after, "primary_slot_name") == "node1"
    assert setting_in(after, "primary_conninfo") == info
    assert "password='it\\'s a \\\\secret'" in info


WALDUMP = """\
rmgr: Heap        len (rec/tot):     54/    54, tx:        740, lsn: 0/03033300, prev 0/030332C8, desc: INSERT off 3
rmgr: Transaction len (rec/tot):     34/    34, tx:        740, lsn: 0/03033338, prev 0/03033300, desc: COMMIT 2026-12-02 03:56:13.400000 UTC
rmgr: Heap        len (rec/tot):     54/    54, tx:        741, lsn: 0/03033378, prev 0/03033338, desc: INSERT off 4
rmgr: Transaction len (rec/tot):     34/    34, tx:        741, lsn: 0/030333B0, prev 0/03033378, desc: COMMIT 2026-12-02 03:56:13.468487 UTC
rmgr: Heap        len (rec/tot):     54/    54, tx:        742, lsn: 0/030333D8, prev 0/030333B0, desc: INSERT off 5
rmgr: Transaction len (rec/tot):     34/    34, tx:        742, lsn: 0/03033410, prev 0/030333D8, desc: COMMIT 2026-12-02 03:56:13.500000 UTC
pg_waldump: error: error in WAL record at 0/3033438: invalid record length at 0/3033438: wanted 24, got 0
"""


def test_wal_loss_counts_the_commits_past_the_fork_point():
    loss = parse_waldump(WALDUMP, fork_lsn="0/3033378")
    assert loss.lost_transactions == 2
    assert loss.lost_bytes == 0x3033432 - 0x3033378
    assert loss.first_lost_commit_at == datetime(2026, 12, 2, 3, 56, 13, 468487, tzinfo=UTC)
    assert loss.lost_seconds == pytest.approx(0.031513)
    assert "2 committed transaction(s)" in loss.sentence()
    nothing = parse_waldump("pg_waldump: error: could not find a valid record after 0/3033438\n", fork_lsn="0/3033438")
    assert nothing.lost_transactions == 0 and nothing.lost_bytes == 0 and nothing.sentence().startswith("no data lost")


def test_fork_point_from_a_history_file():
    history = "1\t0/3033378\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n"
    assert fork_point(history) == (2, "0/5000000")  # the newest entry: the timeline it branched from
    assert fork_point("1\t0/3033378\treason\n") == (1, "0/3033378")
    assert fork_point("") is None
