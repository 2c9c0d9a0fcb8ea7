"""`EmbeddingCache`: embed a list of texts once, keep the vectors on disk.

Training and evaluation embed thousands of texts (MMLU-Pro: 9.6k questions, about two minutes
on two cores); re-runs read the vectors back in milliseconds. An entry is keyed by the embedder
id and a hash of the texts in order, so a changed text, order or embedding model is a miss,
never a stale hit. Each entry also stores a digest per text: on a miss, texts already embedded
in another entry of the same embedder (a subset, a re-ordering, a data set that grew) are
reused and only the new ones are embedded. Entries are plain `.npz` files (loaded with
`allow_pickle=False`), written atomically, so two processes never see half a file.

    cache = EmbeddingCache()                      # ~/.cache/coe-gateway/embeddings
    vectors = cache.embed(embedder, texts)        # computes (with a progress bar) or loads
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from routers.embedder import Embedder

__all__ = ["EmbeddingCache", "default_cache_dir", "texts_hash"]

Vectors = npt.NDArray[np.float32]


def default_cache_dir() -> Path:
    """`$COE_EMBED_CACHE`, else `$XDG_CACHE_HOME/coe-gateway/embeddings` (~/.cache/...)."""
    explicit = os.environ.get("COE_EMBED_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "coe-gateway" / "embeddings"


def _digests(texts: Sequence[str]) -> npt.NDArray[np.uint8]:
    """16 bytes of SHA-256 per text, as an (n, 16) array."""
    out = np.empty((len(texts), 16), dtype=np.uint8)
    for i, text in enumerate(texts):
        out[i] = np.frombuffer(hashlib.sha256(text.encode("utf-8")).digest()[:16], dtype=np.uint8)
    return out


def texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 over the texts in order (length-prefixed, so boundaries count)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class EmbeddingCache:
    """A directory of `<embedder-id>-<texts-hash>.npz` files."""

    def __init__(self, root: Path | None = None, *, batch_size: int = 256) -> None:
        self.root = root if root is not None else default_cache_dir()
        self.batch_size = batch_size

    @staticmethod
    def _slug(embedder_id: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", embedder_id).strip("_") or "embedder"

    def path(self, embedder_id: str, texts: Sequence[str]) -> Path:
        return self.root / f"{self._slug(embedder_id)}-{texts_hash(texts)[:24]}.npz"

    def load(self, embedder_id: str, texts: Sequence[str]) -> Vectors | None:
        """The cached vectors, or None on a miss (or an unreadable / mismatched entry)."""
        path = self.path(embedder_id, texts)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                vectors = np.asarray(data["vectors"], dtype=np.float32)
                stored_id = str(data["embedder_id"])
        except (OSError, KeyError, ValueError):
            return None
        if stored_id != embedder_id or vectors.ndim != 2 or vectors.shape[0] != len(texts):
            return None
        return vectors

    def store(self, embedder_id: str, texts: Sequence[str], vectors: Vectors) -> Path:
        path = self.path(embedder_id, texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(
            partial,
            vectors=np.asarray(vectors, dtype=np.float32),
            embedder_id=embedder_id,
            digests=_digests(texts),
        )
        partial.replace(path)
        return path

    def _known(self, embedder_id: str, wanted: set[bytes]) -> dict[bytes, Vectors]:
        """Vectors of the wanted text digests found in other entries of this embedder."""
        found: dict[bytes, Vectors] = {}
        for path in sorted(self.root.glob(f"{self._slug(embedder_id)}-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["embedder_id"]) != embedder_id or "digests" not in data.files:
                        continue
                    digests, vectors = data["digests"], data["vectors"]
            except (OSError, KeyError, ValueError):
                continue
            for digest, vector in zip(digests, vectors, strict=False):
                key = digest.tobytes()
                if key in wanted and key not in found:
                    found[key] = np.asarray(vector, dtype=np.float32)
            if len(found) == len(wanted):
                break
        return found

    def embed(self, embedder: Embedder, texts: Sequence[str], *, progress: bool = True) -> Vectors:
        """Vectors for `texts` from the cache, computing and storing them on a miss."""
        texts = list(texts)
        cached = self.load(embedder.id, texts)
        if cached is not None:
            return cached
        keys = [d.tobytes() for d in _digests(texts)]
        known = self._known(embedder.id, set(keys)) if self.root.is_dir() else {}
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in known))
        by_text = dict(zip(missing, self._compute(embedder, missing, progress), strict=True))
        if texts:
            rows = [
                known[k] if k in known else by_text[t] for t, k in zip(texts, keys, strict=True)
            ]
            vectors = np.stack(rows).astype(np.float32, copy=False)
        else:
            vectors = np.empty((0, embedder.dim), np.float32)
        self.store(embedder.id, texts, vectors)
        return vectors

    def _compute(self, embedder: Embedder, texts: list[str], progress: bool) -> list[Vectors]:
        if not texts:
            return []
        parts: list[Vectors] = []
        bar = tqdm(
            total=len(texts), desc=f"embed ({embedder.id})", unit="text", disable=not progress
        )
        with bar:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                parts.append(np.asarray(embedder.embed(batch), dtype=np.float32))
                bar.update(len(batch))
        return list(np.concatenate(parts))
