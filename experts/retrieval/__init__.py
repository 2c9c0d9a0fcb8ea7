"""Domain retrievers: a corpus indexed (dense, lexical or hybrid) as a versioned artifact.

    corpus.py     load_corpus: JSONL -> Documents, errors naming file:line (CorpusError)
    base.py       Passage, Retriever (the protocol: search, pilots, pilot_texts, embedder_id)
    artifact.py   router artifacts of the `index` family (IndexArtifactError);
                  read_pilot_texts: a directory's pilot texts from its manifest alone
    build.py      build_index: corpus -> artifact directory, swapped in only when complete
    index.py      load_index -> Index (a Retriever)
    reloading.py  ReloadingRetriever: an index directory, re-read when it is rebuilt
    server.py     create_app: an index over HTTP (`coe index serve`)
    remote.py     RemoteRetriever: a served index as a Retriever; read_remote_pilot_texts
    dense.py      faiss IndexFlatIP;  lexical.py  bm25s;  fusion.py  reciprocal-rank fusion
    pilots.py     spherical k-means centroids of the documents, for routing to a domain
    passages.py, strings.py   passages as packed UTF-8 arrays

Lifecycle::

    build_index(Path("med.jsonl"), Path("indexes/med"), IndexKind.HYBRID, embedder)
    index = load_index(Path("indexes/med"), embedder)
    index.search("blood pressure in children", k=5)
    read_pilot_texts(Path("indexes/med"))      # exemplars for the router, without loading

In a long-running process, `ReloadingRetriever(directory, embedder, interval_s=2.0)` follows
rebuilds; `RemoteRetriever(url, timeout_s)` searches an index served by `coe index serve`.
"""

from experts.retrieval.artifact import (
    IndexArtifactError,
    IndexKind,
    IndexManifest,
    read_index_manifest,
    read_pilot_texts,
)
from experts.retrieval.base import Passage, Retriever
from experts.retrieval.build import build_index
from experts.retrieval.corpus import Corpus, CorpusError, Document, load_corpus
from experts.retrieval.index import Index, load_index
from experts.retrieval.reloading import ReloadingRetriever

__all__ = [
    "Corpus",
    "CorpusError",
    "Document",
    "Index",
    "IndexArtifactError",
    "IndexKind",
    "IndexManifest",
    "Passage",
    "ReloadingRetriever",
    "Retriever",
    "build_index",
    "load_corpus",
    "load_index",
    "read_index_manifest",
    "read_pilot_texts",
]
