# Sourced by bin/dev and bin/test: make sure uv and the locked packages exist.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
    echo "installing uv (pip install uv)" >&2
    python3 -m pip install --quiet uv
    hash -r
fi
uv sync --locked --quiet
