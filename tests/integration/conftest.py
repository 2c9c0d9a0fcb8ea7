"""A real vLLM CPU server for the integration tests, started once per session.

`vllm_server` runs deploy/vllm/start.sh (SmolLM2-135M-Instruct served as "smollm2" and
"smollm2-b") on 127.0.0.1:<free port> in its own process group, waits for `/health`, yields the
base URL ("http://127.0.0.1:PORT/v1") and kills the whole group afterwards.

Without the vLLM venv or the model directory (deploy/vllm/setup.sh makes both) the tests skip,
or fail when COE_REQUIRE_VLLM=1. COE_VLLM_URL=http://host:port/v1 uses a server already running
(with the same served names) instead of starting one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from experts.weights import default_cache_dir, default_smollm2_dir, is_complete
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO / "deploy" / "vllm" / "start.sh"
SERVED_NAMES = ("smollm2", "smollm2-b")
VLLM_ARGS = ("--enable-auto-tool-choice", "--tool-call-parser", "pythonic")
"""vLLM answers a named `tool_choice` (forced with structured outputs) only when a tool-call
parser is enabled; SmolLM2 has no tool format of its own, and pythonic needs no special tokens."""
READY_TIMEOUT_S = 360.0
STOP_TIMEOUT_S = 30.0


def vllm_venv() -> Path:
    env = os.environ.get("COE_VLLM_VENV")
    return Path(env) if env else default_cache_dir() / "vllm-venv"


def missing_pieces() -> list[str]:
    """What deploy/vllm/setup.sh has not made yet."""
    missing = []
    if not (vllm_venv() / ".coe-vllm-ready").is_file():
        missing.append(f"the vLLM venv ({vllm_venv()})")
    if not is_complete(default_smollm2_dir()):
        missing.append(f"the SmolLM2 directory ({default_smollm2_dir()})")
    return missing


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running vLLM server: 'http://127.0.0.1:PORT/v1'."""
    external = os.environ.get("COE_VLLM_URL")
    if external:
        yield external.rstrip("/")
        return
    missing = missing_pieces()
    if missing:
        reason = f"no real vLLM: missing {' and '.join(missing)}; run deploy/vllm/setup.sh"
        if os.environ.get("COE_REQUIRE_VLLM") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    log_path = tmp_path_factory.mktemp("vllm") / "vllm.log"
    port = free_port()
    env = os.environ | {
        "COE_VLLM_PORT": str(port),
        "COE_VLLM_HOST": "127.0.0.1",
        "COE_VLLM_SERVED_NAMES": " ".join(SERVED_NAMES),
        "COE_VLLM_MODEL_DIR": str(default_smollm2_dir()),
        "COE_VLLM_VENV": str(vllm_venv()),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(START_SCRIPT), *VLLM_ARGS],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", log_path)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_group(process)


def wait_ready(process: subprocess.Popen[bytes], root: str, log_path: Path) -> None:
    """Poll GET /health until 200; fail with the log's tail if vLLM exits or takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM exited with {process.returncode}:\n{tail(log_path)}", pytrace=False)
        try:
            if httpx.get(f"{root}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    pytest.fail(f"vLLM not ready after {READY_TIMEOUT_S:.0f}s:\n{tail(log_path)}", pytrace=False)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL what is left; check nothing survives."""
    group = process.pid  # start_new_session: the group id is the leader's pid
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()  # reap the leader, or it lingers as a zombie in the group
            if not group_alive(group):
                return
            time.sleep(0.2)
    process.poll()
    if group_alive(group):
        raise RuntimeError(f"vLLM processes of group {group} survived SIGKILL")


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def tail(path: Path, size: int = 4000) -> str:
    return path.read_bytes()[-size:].decode("utf-8", "replace")
