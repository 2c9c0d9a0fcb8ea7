"""The whole HTTP API fuzzed from its own OpenAPI schema (schemathesis, `--checks all`, every
phase: examples, coverage, fuzzing, stateful; the admin API with its key): no 5xx other than a
documented 503, every status and content type documented, every error in OpenAI's shape, no
request that hangs (each has a 10 s timeout), schema-valid data accepted and invalid data
refused. tests/fuzz/schemathesis.toml says where the defaults are changed, and why.

`COE_FUZZ_SEED` (default 1) and `COE_FUZZ_EXAMPLES` (default 25 per operation) repeat it with
other seeds or more cases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from routers.embedder import Embedder
from tests.gateway.conftest import ADMIN_KEY, Sim, run_gateway, standard_experts, write_config

CONFIG = Path(__file__).parents[1] / "fuzz" / "schemathesis.toml"
pytestmark = pytest.mark.timeout(900)


def test_the_api_conforms_to_its_schema_under_fuzzing(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    config = write_config(tmp_path, standard_experts(sims), auth={"client_keys": "off"})
    seed = os.environ.get("COE_FUZZ_SEED", "1")
    examples = os.environ.get("COE_FUZZ_EXAMPLES", "25")
    with run_gateway(config, embedder) as gw:
        args = [str(Path(sys.executable).parent / "st"), "--config-file", str(CONFIG)]
        args += ["--no-color", "run", f"{gw.url}/openapi.json", "--checks", "all"]
        args += ["--seed", seed, "--max-examples", examples, "--request-timeout", "10"]
        args += ["-H", f"Authorization: Bearer {ADMIN_KEY}"]
        # cwd: its cache and reports stay out of the repository
        result = subprocess.run(args, capture_output=True, text=True, timeout=800, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Test cases:" in result.stdout and "generated" in result.stdout
