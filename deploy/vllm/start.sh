#!/usr/bin/env bash
# Start a vLLM CPU worker serving SmolLM2-135M-Instruct (OpenAI API on /v1, plus /health, /metrics).
#
# Needs deploy/vllm/setup.sh first. Everything is an environment variable:
#   COE_VLLM_VENV          the vLLM venv             (default ~/.cache/coe-gateway/vllm-venv)
#   COE_VLLM_MODEL_DIR     the model directory       (default ~/.cache/coe-gateway/models/smollm2-135m-instruct)
#   COE_VLLM_HOST          bind address              (default 127.0.0.1)
#   COE_VLLM_PORT          port                      (default 8000)
#   COE_VLLM_SERVED_NAMES  served model names        (default "smollm2"; space-separated aliases)
#   COE_VLLM_MAX_MODEL_LEN context length            (default 2048)
#   VLLM_CPU_KVCACHE_SPACE KV cache in GiB           (default 1; vLLM's own default is 4)
#   VLLM_CPU_OMP_THREADS_BIND  OpenMP core binding   (default "nobind": the cores are shared)
# Extra arguments go to vLLM unchanged. The script execs vLLM: its PID is the server's.
set -euo pipefail

cache="${COE_CACHE_DIR:-$HOME/.cache/coe-gateway}"
venv="${COE_VLLM_VENV:-$cache/vllm-venv}"
model_dir="${COE_VLLM_MODEL_DIR:-$cache/models/smollm2-135m-instruct}"

if [[ ! -f "$venv/.coe-vllm-ready" || ! -f "$model_dir/coe-weights.json" ]]; then
    echo "vLLM venv or model missing: run deploy/vllm/setup.sh first" >&2
    exit 2
fi

export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}"
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# shellcheck disable=SC2086  # the served names are a word list on purpose
exec "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$model_dir" \
    --served-model-name ${COE_VLLM_SERVED_NAMES:-smollm2} \
    --host "${COE_VLLM_HOST:-127.0.0.1}" \
    --port "${COE_VLLM_PORT:-8000}" \
    --dtype bfloat16 \
    --max-model-len "${COE_VLLM_MAX_MODEL_LEN:-2048}" \
    "$@"
