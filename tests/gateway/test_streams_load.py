"""1,000 concurrent streaming clients through one gateway process (bench/gateway/streams.py):
every stream ends with [DONE] (completed or a clean error), none hangs, nothing is left in
flight, and the memory the streams cost stays bounded. The simulator is the upstream (a load
tool); speed is not asserted here: bench/gateway/streams.json records it against the direct
baseline."""

from __future__ import annotations

import pytest

from bench.gateway.streams import run

pytestmark = pytest.mark.timeout(900)


def test_a_thousand_concurrent_streams_end_cleanly() -> None:
    (row,) = run([1000], timeout_s=300)
    assert row["hung"] == 0 and row["refused"] == 0, row
    assert row["completed"] + row["errored"] == 1000
    assert row["completed"] >= 990, row  # the simulator fails nothing on purpose here
    assert row["inflight_after"] == 0
    assert row["added_mib"] < 256, row  # measured ~40-55 MiB for 1,000 streams
    assert row["direct"]["completed"] == 1000
