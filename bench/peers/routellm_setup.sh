#!/usr/bin/env bash
# Install the peer router RouteLLM (PyPI `routellm`) in its own venv, for
# bench/peers/routellm_mf.sh. Idempotent.
#
# Its pins may clash with the project's, so it never goes into pyproject.toml or .venv:
#   COE_ROUTELLM_VENV  (default ~/.cache/coe-gateway/routellm-venv)
# A complete venv carries the marker .coe-routellm-ready and is not redone. A few minutes the
# first time (wheels from PyPI), instant after.
#
# Only RouteLLM's matrix-factorisation training code (routellm.routers.matrix_factorization)
# is used; its released checkpoints live on the Hugging Face hub, which is not reachable here.
# torch goes first, pinned: the local CPU build (any other spec pulls the CUDA wheels). litellm
# is pinned to 1.106.2, the newest whose dependencies resolve from the index this project
# reaches (see litellm_setup.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/side_venv.sh"

cache="${COE_CACHE_DIR:-$HOME/.cache/coe-gateway}"
venv="${COE_ROUTELLM_VENV:-$cache/routellm-venv}"
marker="$venv/.coe-routellm-ready"
torch_version="2.13.0"
routellm_version="0.2.0"
litellm_version="1.106.2"

side_venv_begin "$venv" "$marker" routellm && exit 0
side_pip "$venv" "torch==$torch_version"
side_pip "$venv" "torch==$torch_version" "routellm==$routellm_version" "litellm==$litellm_version"
# routellm builds an OpenAI client at import time (routers/similarity_weighted/utils.py), which
# wants a key; no call is made with it.
OPENAI_API_KEY=unused-no-call-is-made "$venv/bin/python" -c "
import torch
from importlib.metadata import version
from routellm.routers.matrix_factorization.train_matrix_factorization import MFModel_Train
print('routellm', version('routellm'), 'torch', torch.__version__)"
echo "torch==$torch_version routellm==$routellm_version" > "$marker"
