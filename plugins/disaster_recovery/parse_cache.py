"""What the DAG files learn from the plans folder, kept on local disk between parses.

Each dag-processor cycle runs both DAG files that read every plan, each in a fresh process:
recovery_plans.py renders the valid plans, dr_config_errors.py reports the invalid ones. Reading and
validating a thousand plans costs more than rendering them, and the answer only changes when a plan file
or our code does. So the validated ``PlanSet`` is stored under a key of everything it is made from:

  - each plan file's path and content (BLAKE2b of the bytes the loader reads, at most its size cap:
    reading 1000 small files takes ~20 ms, and unlike size and mtime a digest cannot miss an edit made
    within the same clock tick or one that keeps the size);
  - the code that judges them: every ``.py`` of the disaster_recovery package, the Python, pydantic,
    PyYAML and Airflow versions, the implemented step types, this module's FORMAT;
  - today's date (a PlanSet's warnings, such as an overdue review, depend on it).

Two entries per plans folder, each written to a temporary file in the cache folder and renamed over the
old one, so a reader sees the old or the new entry, never half of one, and of two writers the last rename
wins with an entry as complete as the other's:

  - ``<folder>.problems.json``: the problem lines, all dr_config_errors.py needs (plain JSON);
  - ``<folder>.plans.pickle``: the PlanSet, for recovery_plans.py.

An entry that cannot be read, is damaged, of another key or another format is a miss: the caller
validates exactly as it would without a cache. A cache folder that cannot be made or written means no
cache, never a failed parse. Entries are only read from a folder this user owns and nobody else may
write to (created 0700, like ~/.ssh): a pickle is code, trusted as Python trusts its __pycache__.

Local files only: no database, network, Variable or Connection (this runs at parse time).
``DR_PARSE_CACHE=off`` turns it off; ``DR_PARSE_CACHE=DIR`` moves it (default ``$AIRFLOW_HOME/dr_parse_cache``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path

from disaster_recovery.plans import PlanSet
from disaster_recovery.plans.reading.bounds import MAX_FILE_BYTES

FORMAT = 1
"""Bump when the entries' layout changes (the code digest changes anyway when any source does)."""

PACKAGE = Path(__file__).resolve().parent
OFF = frozenset({"", "0", "off", "false", "no"})

log = logging.getLogger(__name__)

Loader = Callable[[Sequence[Path]], PlanSet]


def cache_dir() -> Path | None:
    """The cache folder, made if needed; None when turned off or not one we can trust and write."""
    configured = os.environ.get("DR_PARSE_CACHE")
    if configured is not None and configured.strip().lower() in OFF:
        return None
    if configured:
        folder = Path(configured)
    else:
        from airflow.configuration import AIRFLOW_HOME

        folder = Path(AIRFLOW_HOME) / "dr_parse_cache"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError as exc:
        log.debug("no parse cache: %s", exc)
        return None
    owner = getattr(os, "geteuid", lambda: info.st_uid)()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o022:
        log.warning("not using the parse cache %s: it must be a folder of this user that nobody else may write", folder)
        return None
    return folder


@lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of the code that loads and judges plans: this package's sources and the libraries."""
    import airflow
    import pydantic
    import yaml

    digest = hashlib.blake2b(digest_size=16)
    for part in (FORMAT, sys.version, pydantic.VERSION, yaml.__version__, airflow.__version__):
        digest.update(f"{part}\0".encode())
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(f"{source.relative_to(PACKAGE)}\0".encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def folder_key(files: Sequence[Path], *, extra: Sequence[str] = ()) -> str | None:
    """The key of these files' current contents (plus ``extra``); None when a file cannot be read."""
    digest = hashlib.blake2b(digest_size=20)
    for part in (code_version(), date.today().isoformat(), *extra):
        digest.update(f"{part}\0".encode())
    for path in files:
        try:
            with open(path, "rb") as handle:
                content = handle.read(MAX_FILE_BYTES + 1)  # what the loader reads: past that it refuses unread
        except OSError:
            return None  # the loader reports it; an unreadable file is never cached
        digest.update(f"{path}\0".encode())
        digest.update(hashlib.blake2b(content).digest())
    return digest.hexdigest()


class PlansCache:
    """The two entries of one plans folder (see the module's doc)."""

    def __init__(self, folder: Path, plans_dir: Path) -> None:
        name = hashlib.blake2b(str(plans_dir.absolute()).encode(), digest_size=12).hexdigest()
        self.problems_file = folder / f"{name}.problems.json"
        self.plans_file = folder / f"{name}.plans.pickle"

    def problem_lines(self, key: str) -> list[str] | None:
        try:
            entry = json.loads(self.problems_file.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key:
            return None
        lines = entry.get("problems")
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            return None
        return lines

    def plan_set(self, key: str) -> PlanSet | None:
        header = _header(key)
        try:
            with self.plans_file.open("rb") as file:
                if file.read(len(header)) != header:
                    return None
                plan_set = pickle.load(file)  # noqa: S301 - our own entry, in a folder only we may write
        except Exception as exc:  # noqa: BLE001 - damaged or from other code: a miss, never a failed parse
            log.debug("parse cache entry %s not used: %s", self.plans_file, exc)
            return None
        return plan_set if isinstance(plan_set, PlanSet) else None

    def store(self, key: str, plan_set: PlanSet) -> None:
        lines = [str(p) for p in plan_set.problems]
        entry = json.dumps({"format": FORMAT, "key": key, "problems": lines}).encode()
        _replace(self.problems_file, entry)
        try:
            blob = pickle.dumps(plan_set, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - a plan that does not pickle is simply not cached
            log.debug("plans not cached: %s", exc)
            return
        _replace(self.plans_file, _header(key) + blob)


def _header(key: str) -> bytes:
    return f"dr-parse-cache {FORMAT} {key}\n".encode()


def _replace(target: Path, content: bytes) -> None:
    """Write ``content`` to ``target`` atomically (temporary file + rename); failures are logged only."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        log.debug("parse cache not written: %s", exc)
        return
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.replace(tmp, target)
    except OSError as exc:
        log.debug("parse cache not written: %s", exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _cache_for(plans_dir: Path) -> PlansCache | None:
    folder = cache_dir()
    return None if folder is None else PlansCache(folder, plans_dir)


def _load_and_store(
    cache: PlansCache | None, key: str | None, files: Sequence[Path], load: Loader, *, extra: Sequence[str]
) -> PlanSet:
    plan_set = load(files)
    # Stored only if no file changed while it was read, so an entry always describes the contents it names.
    if cache is not None and key is not None and folder_key(files, extra=extra) == key:
        cache.store(key, plan_set)
    return plan_set


def cached_plan_set(plans_dir: Path, files: Sequence[Path], load: Loader, *, extra: Sequence[str] = ()) -> PlanSet:
    """``load(files)``, or the PlanSet it returned before for exactly these contents and this code."""
    cache = _cache_for(plans_dir)
    key = folder_key(files, extra=extra) if cache is not None else None
    if cache is not None and key is not None and (hit := cache.plan_set(key)) is not None:
        return hit
    return _load_and_store(cache, key, files, load, extra=extra)


def cached_problem_lines(
    plans_dir: Path, files: Sequence[Path], load: Loader, *, extra: Sequence[str] = ()
) -> list[str]:
    """The problem lines of ``load(files)``, from the cache when these contents were judged before."""
    cache = _cache_for(plans_dir)
    key = folder_key(files, extra=extra) if cache is not None else None
    if cache is not None and key is not None and (hit := cache.problem_lines(key)) is not None:
        return hit
    return [str(p) for p in _load_and_store(cache, key, files, load, extra=extra).problems]
