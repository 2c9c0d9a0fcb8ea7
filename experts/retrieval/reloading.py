"""`ReloadingRetriever`: an index directory served as a `Retriever`, reloaded when rebuilt.

`coe index build --out DIR` under a running gateway (or `coe index serve`) takes effect
without a restart: at most every `interval_s` seconds a call looks at `DIR/manifest.json`'s
(mtime, size, inode); when it changed, the index is loaded again with the checks of
`load_index`. A new index that fails to load (a build half swapped in, another embedder, a
corrupt file) is logged as a warning and the current one kept; it is tried again once the
manifest changes again (not at every check: a broken index is not re-read every few seconds).
The pattern is `routers.trained.TrainedRouter._maybe_reload`'s.

Thread-safe: the current index is one attribute, replaced whole (an `Index` is immutable), and
one thread at a time reloads; the others keep answering with the current index meanwhile.

Lifecycle::

    retriever = ReloadingRetriever(Path("indexes/med"), embedder)   # loads and checks now
    retriever.search("blood pressure in children", k=5)
    retriever.pilot_texts        # the current index's, after a rebuild the new ones
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from experts.retrieval.artifact import IndexArtifactError, IndexManifest
from experts.retrieval.base import Passage
from experts.retrieval.index import Index, load_index
from routers.artifact import MANIFEST_FILE
from routers.embedder import Embedder, Vectors

__all__ = ["DEFAULT_RELOAD_INTERVAL_S", "ReloadingRetriever"]

logger = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL_S = 2.0

Stamp = tuple[int, int, int]


class ReloadingRetriever:
    """The index in `directory` (a `Retriever`), re-read when its manifest changes."""

    def __init__(
        self,
        directory: Path,
        embedder: Embedder | None = None,
        *,
        interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
    ) -> None:
        """Load the index now (`IndexArtifactError` if it is unusable)."""
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, not {interval_s}")
        self.directory = directory
        self._embedder = embedder
        self._interval = interval_s
        self._lock = threading.Lock()
        self._stamp = self._manifest_stamp()
        self._failed: Stamp | None = None
        self._index = load_index(directory, embedder)
        self._checked = time.monotonic()

    @property
    def index(self) -> Index:
        """The current index (after checking for a rebuilt one, at most every `interval_s`)."""
        self._maybe_reload()
        return self._index

    @property
    def manifest(self) -> IndexManifest:
        return self.index.manifest

    @property
    def embedder_id(self) -> str:
        return self.index.embedder_id

    @property
    def pilots(self) -> Vectors:
        return self.index.pilots

    @property
    def pilot_texts(self) -> tuple[str, ...]:
        return self.index.pilot_texts

    def search(self, query: str, k: int) -> list[Passage]:
        return self.index.search(query, k)

    def reload(self) -> bool:
        """Check for a rebuilt index now, whatever the interval; True if one was loaded."""
        with self._lock:
            return self._reload_locked()

    def _manifest_stamp(self) -> Stamp:
        try:
            stat = (self.directory / MANIFEST_FILE).stat()
        except OSError:
            return (0, 0, 0)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._interval:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking (or loading): answer with the current index
        try:
            self._checked = now
            self._reload_locked()
        finally:
            self._lock.release()

    def _reload_locked(self) -> bool:
        stamp = self._manifest_stamp()
        if stamp in (self._stamp, self._failed):
            return False
        try:
            index = load_index(self.directory, self._embedder)
        except Exception as exc:  # whatever breaks, the current index stays
            self._failed = stamp
            reason = exc if isinstance(exc, IndexArtifactError) else repr(exc)
            logger.warning("keeping the current index of %s: %s", self.directory, reason)
            return False
        self._index, self._stamp, self._failed = index, stamp, None
        self._checked = time.monotonic()
        logger.info("reloaded index %s (%s, %d documents)", self.directory, index.kind, len(index))
        return True
