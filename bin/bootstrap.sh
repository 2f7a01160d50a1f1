# Sourced by bin/dev and bin/test: make sure uv and the locked packages exist.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
    echo "installing uv (pip install uv)" >&2
    python3 -m pip install --quiet uv
    hash -r
fi
# --compile-bytecode: this machine sets PYTHONDONTWRITEBYTECODE, so without it
# every process (each test worker too) compiles Django from source at start.
uv sync --locked --quiet --compile-bytecode
# Our own code too (__pycache__ is git-ignored); stale files are ignored.
.venv/bin/python -m compileall -q -j 0 config healthcheck jobs bench tests manage.py >/dev/null
