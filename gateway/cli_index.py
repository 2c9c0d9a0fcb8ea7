"""`coe index build` / `coe index serve`: index a domain corpus into a retriever artifact
directory; serve one over HTTP (`experts.retrieval.server`, for `RemoteRetriever`).

    coe index build --corpus FILE --out DIR [--kind dense|lexical|hybrid] [--pilots N]
                    [--model all-MiniLM-L6-v2] [--pilot-queries FILE.jsonl]
    coe index serve --index DIR [--host 127.0.0.1] [--port 8100] [--model M]
                    [--reload-interval 2]

The corpus is JSONL (`id` or `_id`, `text`, optional `title`, other keys kept as metadata);
`experts.retrieval` does the work (imported only when the command runs, so `coe serve` never
loads faiss or bm25s). Bad input (a corpus line that is not JSON, an empty corpus, an `--out`
that is not an index) exits 2 with one `error: FILE[:LINE]: ...` line; `DIR` is replaced only
by a complete, verified index. `--pilot-queries` (JSONL, a `text` per line: a domain's example
queries) become the index's pilot texts instead of the documents nearest its pilots.

`serve` loads the index (exit 2 with `error: DIR: ...` if it is unusable), embeds queries with
the model the index was built with (its manifest's `embedder_id`, unless `--model`; a lexical
index needs none) and reloads the index when it is rebuilt in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from experts.retrieval.artifact import IndexKind
from routers.config import EmbedderConfig
from routers.embedder import Embedder
from routers.factory import build_embedder

__all__ = ["register"]

index_app = typer.Typer(
    help="Build and serve retriever indexes (domain corpora).", no_args_is_help=True
)


class _QueryFileError(ValueError):
    """A `--pilot-queries` file that cannot be read; the message names file[:line]."""


def _read_queries(path: Path) -> list[str]:
    """The `text` of every non-blank JSONL line of `path`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _QueryFileError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from exc
    texts: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _QueryFileError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _QueryFileError(f"{path}:{number}: expected an object with a non-empty 'text'")
        texts.append(text)
    if not texts:
        raise _QueryFileError(f"{path}: no queries")
    return texts


@index_app.command("build")
def build_command(
    corpus: Annotated[Path, typer.Option(help="Corpus JSONL: id (or _id), text, optional title.")],
    out: Annotated[Path, typer.Option(help="Index directory (replaced when the build succeeds).")],
    kind: Annotated[IndexKind, typer.Option(help="dense | lexical | hybrid")] = IndexKind.HYBRID,
    pilots: Annotated[
        int, typer.Option(min=1, max=256, help="Pilot embeddings (centroids) for routing.")
    ] = 8,
    model: Annotated[
        str, typer.Option(help="Embedding model: all-MiniLM-L6-v2 or a local directory.")
    ] = "all-MiniLM-L6-v2",
    pilot_queries: Annotated[
        Path | None,
        typer.Option(help="JSONL of example queries ('text' per line): the pilot texts."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Build a dense, lexical or hybrid index of a corpus (with its pilot embeddings)."""
    from experts.retrieval.artifact import IndexArtifactError
    from experts.retrieval.build import build_index
    from experts.retrieval.corpus import CorpusError

    try:
        queries = None if pilot_queries is None else _read_queries(pilot_queries)
        embedder = build_embedder(EmbedderConfig(model=model, cache_size=0))
        manifest = build_index(corpus, out, kind, embedder, pilots=pilots, sample_queries=queries)
    except (CorpusError, IndexArtifactError, _QueryFileError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(manifest.summary() | {"directory": str(out)}))
        return
    typer.echo(
        f"{out}: {manifest.kind} index of {manifest.doc_count} documents, "
        f"{manifest.params['pilots']} pilots, built in {manifest.metrics['build_seconds']} s"
    )


@index_app.command("serve")
def serve_command(
    index: Annotated[Path, typer.Option(help="Index directory (built by `coe index build`).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8100,
    model: Annotated[
        str | None,
        typer.Option(help="Embedding model for queries (default: the index's embedder_id)."),
    ] = None,
    reload_interval: Annotated[
        float, typer.Option(min=0.0, help="Seconds between checks for a rebuilt index.")
    ] = 2.0,
) -> None:
    """Serve an index over HTTP: POST /v1/search, GET /v1/index, GET /healthz."""
    import uvicorn

    from experts.retrieval.artifact import IndexArtifactError, read_index_manifest
    from experts.retrieval.reloading import ReloadingRetriever
    from experts.retrieval.server import create_app

    try:
        manifest = read_index_manifest(index)
        embedder: Embedder | None = None
        if model is not None or manifest.kind is not IndexKind.LEXICAL:
            embedder = build_embedder(
                EmbedderConfig(model=model or manifest.embedder_id, cache_size=1024)
            )
        served = ReloadingRetriever(index, embedder, interval_s=reload_interval)
    except (IndexArtifactError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{index}: {manifest.kind} index of {manifest.doc_count} documents on http://{host}:{port}",
        err=True,
    )
    uvicorn.run(create_app(served), host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add `index build` and `index serve` to the `coe` app."""
    app.add_typer(index_app, name="index")
