#!/usr/bin/env bash
# Build the coe-gateway image from deploy/Containerfile with podman or docker, whichever exists.
#
#   bash deploy/build-image.sh [TAG]          default TAG: coe-gateway:<version in pyproject.toml>
#
# Environment: CONTAINER_RUNTIME (podman | docker; default: the first found), PYTHON_IMAGE (base
# image, default docker.io/library/python:3.11-slim), TORCH_INDEX_URL (default the PyTorch CPU
# index), PLATFORM (e.g. linux/amd64), PUSH=1 to push the tag after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
tag=${1:-coe-gateway:${version:-latest}}
base=${PYTHON_IMAGE:-docker.io/library/python:3.11-slim}

runtime=${CONTAINER_RUNTIME:-}
if [[ -z "$runtime" ]]; then
    for candidate in podman docker; do
        if command -v "$candidate" >/dev/null 2>&1; then
            runtime=$candidate
            break
        fi
    done
fi
if [[ -z "$runtime" ]] || ! command -v "$runtime" >/dev/null 2>&1; then
    echo "build-image: no container runtime found (neither podman nor docker is installed;" >&2
    echo "  install one, or set CONTAINER_RUNTIME). Nothing was built." >&2
    exit 3
fi
if ! "$runtime" info >/dev/null 2>&1; then
    echo "build-image: '$runtime' is installed but not usable (daemon down or no permission)." >&2
    exit 3
fi

# The base image must be present or pullable: say so plainly rather than fail mid-build.
if ! "$runtime" image inspect "$base" >/dev/null 2>&1 && ! "$runtime" pull "$base" >/dev/null; then
    echo "build-image: base image $base is neither present nor pullable (offline registry?)." >&2
    echo "  Load it (\`$runtime load -i python-3.11-slim.tar\`) or set PYTHON_IMAGE to a mirror." >&2
    exit 4
fi

args=(build -f deploy/Containerfile -t "$tag" --build-arg "PYTHON_IMAGE=$base")
[[ -n "${TORCH_INDEX_URL:-}" ]] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
[[ -n "${PLATFORM:-}" ]] && args+=(--platform "$PLATFORM")
if [[ "$runtime" == podman ]]; then
    args+=(--ignorefile deploy/Containerfile.dockerignore)
else
    export DOCKER_BUILDKIT=1  # reads deploy/Containerfile.dockerignore
fi

echo "build-image: $runtime ${args[*]} ."
"$runtime" "${args[@]}" .
echo "build-image: built $tag"
if [[ "${PUSH:-0}" == 1 ]]; then
    "$runtime" push "$tag"
fi
