#!/usr/bin/env bash
# Installs everything the lab and the tests need on a fresh Debian machine of this kind, idempotently:
# PostgreSQL 15 server binaries (Debian), uv, and the locked Python packages in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
pg_bin=""
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
  pg_bin="$(pg_config --bindir)"
else
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || pg_bin=""
fi
[ -n "$pg_bin" ] || need_apt+=(postgresql-15 postgresql-client-15)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "Missing Debian packages: ${need_apt[*]}. Install them with: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  # Debian's postgresql-common would create and start a system cluster on 5432: we never use it.
  $SUDO mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/dr-no-main.conf >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv"
  python3 -m pip install --quiet uv
fi
if [ ! -x .venv/bin/python ]; then
  uv venv .venv --python 3.11 --quiet
fi
# Re-sync only when the lock changed since the last sync.
stamp=.venv/.deps-stamp
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing Python packages from requirements.txt into .venv"
  VIRTUAL_ENV=.venv uv pip sync --quiet requirements.txt
  echo "$want" > "$stamp"
fi
