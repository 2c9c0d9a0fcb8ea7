#!/usr/bin/env bash
# Install the peer gateway LiteLLM proxy (PyPI `litellm[proxy]`) in its own venv, for
# bench/peers/litellm_overhead.py. Idempotent.
#
# Its pins may clash with the project's, so it never goes into pyproject.toml or .venv:
#   COE_LITELLM_VENV  (default ~/.cache/coe-gateway/litellm-venv)
# A complete venv carries the marker .coe-litellm-ready and is not redone. About a minute the
# first time (wheels from PyPI), instant after.
#
# Version: 1.106.2 is the newest litellm whose dependencies resolve from the package index this
# project reaches: 1.106.3 and later (and the 1.103.x-1.105.x patch releases) require
# certifi>=2026.10.19, which is not there. litellm[proxy] does not pull torch; the script checks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/side_venv.sh"

cache="${COE_CACHE_DIR:-$HOME/.cache/coe-gateway}"
venv="${COE_LITELLM_VENV:-$cache/litellm-venv}"
marker="$venv/.coe-litellm-ready"
litellm_version="1.106.2"

side_venv_begin "$venv" "$marker" litellm && exit 0
side_pip "$venv" "litellm[proxy]==$litellm_version"
if "$venv/bin/pip" show --quiet torch >/dev/null 2>&1; then
    echo "litellm[proxy]==$litellm_version pulled torch; not expected, stopping" >&2
    exit 1
fi
"$venv/bin/python" -c "from importlib.metadata import version; print('litellm', version('litellm'))"
test -x "$venv/bin/litellm"
echo "litellm[proxy]==$litellm_version" > "$marker"
