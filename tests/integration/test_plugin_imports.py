"""The library is imported once, as `disaster_recovery`, never again under bare module names.

Airflow's plugin manager imports every `.py` under plugins/ by its file name unless plugins/.airflowignore
excludes it. The check loads the plugins the way the api-server does, in a fresh interpreter, and looks at
which names the library's files were imported under; a copy of plugins/ without the ignore file shows the
check can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
from pathlib import Path
from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
plugins, errors = plugins_manager._get_plugins()
lib = (Path(sys.argv[1]) / "disaster_recovery").resolve()
names = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if path and Path(path).resolve().is_relative_to(lib):
        names.setdefault(str(Path(path).resolve().relative_to(lib)), []).append(name)
print(json.dumps({"plugins": [p.name for p in plugins], "errors": errors, "names": names}))
"""


def run_probe(plugins_folder: Path, airflow_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(plugins_folder)
    env["AIRFLOW_HOME"] = str(airflow_home)
    env["PYTHONPATH"] = str(plugins_folder)
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(plugins_folder)], env=env, capture_output=True, text=True, timeout=120
    )


def load_plugins(plugins_folder: Path, airflow_home: Path) -> dict:
    proc = run_probe(plugins_folder, airflow_home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_library_is_imported_once_under_its_package_name(tmp_path):
    result = load_plugins(REPO / "plugins", tmp_path)
    assert "disaster_recovery" in result["plugins"]
    assert result["errors"] == {}
    for file, names in result["names"].items():
        assert all(name.startswith("disaster_recovery") for name in names), (file, names)
        assert len(names) == 1, f"{file} imported under {names}"


def test_without_the_ignore_file_the_plugin_manager_would_import_modules_twice(tmp_path):
    copy = tmp_path / "plugins"
    shutil.copytree(REPO / "plugins", copy, ignore=shutil.ignore_patterns("__pycache__", ".airflowignore"))
    proc = run_probe(copy, tmp_path)
    if proc.returncode != 0:
        # The plugin manager loads a package's __main__.py under the name "__main__", which runs it.
        assert "disaster_recovery" in proc.stderr
        return
    names = json.loads(proc.stdout.strip().splitlines()[-1])["names"].values()
    bare = [n for n in names if any("." not in name and name != "disaster_recovery" for name in n)]
    assert bare, "expected bare-name imports without plugins/.airflowignore"
