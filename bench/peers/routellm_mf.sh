#!/usr/bin/env bash
# RouteLLM's own MF training code vs our routers, same data, split, embeddings and metric code
# (see bench/peers/routellm_mf.py). Writes bench/peers/results/routellm_mf.json. ~5 min after
# the one-time venv setup.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${COE_CACHE_DIR:-$HOME/.cache/coe-gateway}"
venv="${COE_ROUTELLM_VENV:-$cache/routellm-venv}"
work="${COE_ROUTELLM_WORK:-$cache/routellm-mf}"
bash bench/peers/routellm_setup.sh
export OPENBLAS_NUM_THREADS=1 HF_HUB_OFFLINE=1
.venv/bin/python -m bench.peers.routellm_mf export "$work"
"$venv/bin/python" bench/peers/routellm_mf_peer.py "$work"
.venv/bin/python -m bench.peers.routellm_mf score "$work"
