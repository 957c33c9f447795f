"""Protected databases as clusters of members (``include/clusters.yaml``): the model and its loader.

A cluster lists its members, each an Airflow postgres connection. Which member is the primary is never
written down: it is read from the servers at run time (``clusters.state``, ``clusters.topology``), so
after a failover everything that names the cluster follows the new primary. A member may say how its
host is controlled (``control: {kind: local, data_directory: ...}``): that is what makes a fence last
(standby.signal written into the old primary's data directory) and what rejoin and switchover need.

A relative ``data_directory`` is relative to ``$DR_CLUSTER_ROOT``; without it, to the lab folder
(``$DR_LAB_HOME``, default ``.lab`` in the repository), as backups.yaml's local storage paths are.
Pure: no Airflow, no I/O beyond reading the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from disaster_recovery.config_files import ItemSet, file_json_schema, load_items
from disaster_recovery.plans.language.base import PlanModel, raise_problems
from disaster_recovery.plans.language.names import ClusterRef, ConnId, PgIdentifier

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CLUSTERS_FILE = REPO / "include" / "clusters.yaml"
CLUSTERS_FILE_ENV = "DR_CLUSTERS_FILE"
CLUSTER_ROOT_ENV = "DR_CLUSTER_ROOT"

def clusters_file(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(CLUSTERS_FILE_ENV) or DEFAULT_CLUSTERS_FILE)


def cluster_root(environ: Mapping[str, str] | None = None) -> Path:
    """What relative data directories are relative to: $DR_CLUSTER_ROOT, else $DR_LAB_HOME, else <repo>/.lab."""
    env = os.environ if environ is None else environ
    return Path(env.get(CLUSTER_ROOT_ENV) or env.get("DR_LAB_HOME") or REPO / ".lab")


def _data_directory(value: str) -> str:
    if not value.strip() or ".." in value.split("/"):
        raise PydanticCustomError("invalid_path", f"data directory {value!r} must be a path without '..'")
    return value


class RejoinMethod(StrEnum):
    AUTO = "auto"  # pg_rewind when the timelines diverged, a fresh clone when rewind is impossible
    REWIND = "rewind"
    CLONE = "clone"


class LocalControl(PlanModel):
    """The member's server runs on the machine (or worker) that runs the step: pg_ctl, files, pg_rewind."""

    kind: Literal["local"]
    data_directory: Annotated[str, AfterValidator(_data_directory)] = Field(
        description="the server's data directory; relative paths are relative to $DR_CLUSTER_ROOT (else the lab)"
    )
    bindir: str | None = Field(None, description="PostgreSQL server binaries (default: pg_config --bindir)")

    def resolved_data_directory(self, environ: Mapping[str, str] | None = None) -> Path:
        path = Path(self.data_directory)
        return path if path.is_absolute() else cluster_root(environ) / path


class Member(PlanModel):
    conn_id: ConnId = Field(description="Airflow postgres connection of this server")
    name: PgIdentifier | None = Field(
        None, description="the member's name: its application_name and replication slot (default: the conn_id)"
    )
    control: LocalControl | None = Field(
        None, description="how the host is controlled; without it fencing is SQL-only and rejoin is refused"
    )
    priority: int = Field(100, ge=0, le=1000, description="promotion preference among equally advanced standbys; 0 never")

    @model_validator(mode="after")
    def _name_from_conn_id(self) -> Member:
        if self.name is None:
            candidate = self.conn_id.lower().replace("-", "_").replace(".", "_")
            if not candidate[:1].isalpha() and candidate[:1] != "_":
                raise_problems(type(self).__name__, [(("name",), f"give a name: {self.conn_id!r} does not start "
                                                      "with a letter, so it cannot be a slot name", None)])
            object.__setattr__(self, "name", candidate[:63])
        return self

    @property
    def member_name(self) -> str:
        assert self.name is not None
        return self.name


class Cluster(PlanModel):
    """One protected database: its members, and the replication it keeps."""

    name: ClusterRef
    description: str = ""
    database: str | None = Field(None, description="database the probes and checks use (default: each connection's)")
    members: tuple[Member, ...] = Field(min_length=1)
    synchronous: bool = Field(
        False,
        description="keep synchronous replication to the standbys (synchronous_standby_names = ANY 1 (...)); "
        "restored after a rejoin, cleared on a new primary with no standby so writes never hang",
    )
    preferred_primary: str | None = Field(None, description="member a switchover returns to by default")
    rejoin_method: RejoinMethod = RejoinMethod.AUTO

    @model_validator(mode="after")
    def _check_members(self) -> Cluster:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        seen_conn: dict[str, int] = {}
        seen_name: dict[str, int] = {}
        for i, member in enumerate(self.members):
            if member.conn_id in seen_conn:
                problems.append((("members", i, "conn_id"), f"connection {member.conn_id!r} is also "
                                 f"members[{seen_conn[member.conn_id]}]", member.conn_id))
            seen_conn.setdefault(member.conn_id, i)
            if member.member_name in seen_name:
                problems.append((("members", i, "name"), f"member name {member.member_name!r} is also "
                                 f"members[{seen_name[member.member_name]}]", member.member_name))
            seen_name.setdefault(member.member_name, i)
        if self.preferred_primary is not None and self.preferred_primary not in seen_name:
            problems.append((("preferred_primary",), f"{self.preferred_primary!r} is not a member "
                             f"({', '.join(seen_name)})", self.preferred_primary))
        raise_problems(type(self).__name__, problems)
        return self

    def member(self, name: str) -> Member:
        """A member by name or connection id; KeyError naming the members otherwise."""
        for member in self.members:
            if name in (member.member_name, member.conn_id):
                return member
        raise KeyError(f"cluster {self.name!r} has no member {name!r} (members: "
                       f"{', '.join(m.member_name for m in self.members)})")

    def member_for_conn(self, conn_id: str) -> Member | None:
        return next((m for m in self.members if m.conn_id == conn_id), None)


ClusterSet = ItemSet[Cluster]


def load_clusters(path: str | Path | None = None) -> ClusterSet:
    """Read and validate a clusters file (default ``$DR_CLUSTERS_FILE`` or include/clusters.yaml)."""
    return load_items(path or clusters_file(), key="clusters", kind="cluster", model=Cluster)


def cluster_of_conn(clusters: ClusterSet, conn_id: str) -> tuple[Cluster, Member] | None:
    """The cluster and member a connection id belongs to, if any."""
    for cluster in clusters.items.values():
        member = cluster.member_for_conn(conn_id)
        if member is not None:
            return cluster, member
    return None


def clusters_json_schema() -> dict[str, Any]:
    """The JSON Schema of clusters files (checked in as include/clusters.schema.json)."""
    from pydantic import BaseModel

    class ClustersFile(BaseModel):
        model_config = {"extra": "forbid"}
        clusters: tuple[Cluster, ...] = Field(min_length=1)

    return file_json_schema(
        ClustersFile, title="Protected clusters",
        description="Each protected database as a cluster of members (Airflow postgres connections); roles are "
        "read from the servers at run time. Secrets never appear here.",
    )
