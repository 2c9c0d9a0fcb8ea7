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

cache="${COE_CACHE_DIR:-$HOME/.cache/coe-gateway}"
venv="${COE_ROUTELLM_VENV:-$cache/routellm-venv}"
marker="$venv/.coe-routellm-ready"
torch_version="2.13.0"
routellm_version="0.2.0"
litellm_version="1.106.2"

if [[ -f "$marker" ]]; then
    echo "routellm venv ready: $venv ($(cat "$marker"))"
    exit 0
fi

echo "creating the routellm venv in $venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
pip_install() {  # quiet; pip's notes about absent local index folders are dropped
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}
pip_install "torch==$torch_version"
pip_install "torch==$torch_version" "routellm==$routellm_version" "litellm==$litellm_version"
"$venv/bin/python" -c "
import torch
from importlib.metadata import version
from routellm.routers.matrix_factorization.train_matrix_factorization import MFModel_Train
print('routellm', version('routellm'), 'torch', torch.__version__)"
echo "torch==$torch_version routellm==$routellm_version" > "$marker"
