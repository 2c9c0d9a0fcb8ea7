"""Lists of strings as two plain arrays (UTF-8 bytes + offsets), so they live in an `.npz`.

numpy's own unicode arrays pad every string to the longest one (4 bytes a character): fine for
ids, wasteful for passage texts. `pack` concatenates the UTF-8 encodings into one `uint8`
array and records where each string ends; `StringTable` reads them back one at a time. No
pickle, no object arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["StringTable", "pack"]


def pack(strings: Sequence[str]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """(`data`, `ends`): string i is `data[ends[i-1]:ends[i]]` decoded (`ends[-1]` for i=0 is 0)."""
    encoded = [s.encode("utf-8") for s in strings]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    return data, ends.astype(np.int64)


class StringTable:
    """Read-only access to strings packed by `pack`."""

    def __init__(self, data: npt.NDArray[np.uint8], ends: npt.NDArray[np.int64]) -> None:
        if data.ndim != 1 or ends.ndim != 1:
            raise ValueError("string table arrays must be one-dimensional")
        if len(ends) and (int(ends[-1]) != len(data) or bool(np.any(np.diff(ends) < 0))):
            raise ValueError("string table offsets do not match its data")
        if len(ends) and int(ends[0]) < 0:
            raise ValueError("string table offsets do not match its data")
        self._data = data.tobytes()
        self._ends = ends

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self._ends):
            raise IndexError(f"string {index} of {len(self._ends)}")
        end = int(self._ends[index])
        start = int(self._ends[index - 1]) if index > 0 else 0
        return self._data[start:end].decode("utf-8")

    def all(self) -> list[str]:
        """Every string, in order."""
        return [self[i] for i in range(len(self))]
