"""The classic_ir collections as `experts.retrieval` reads them, with two data defects repaired.

`load_corpus` refuses what the shared files contain in two places (checked 2026-12):

* cran/corpus.jsonl lines 471 and 995: documents with neither title nor text (empty in the
  original Cranfield distribution). Nothing can retrieve them; they are dropped.
* cacm/corpus.jsonl line 2856: id "28" a second time (the converter read record 2856's `.I`
  line wrongly; its neighbours are 2855 and 2857, and no qrel names either). A repeated id is
  renamed `<id>-line<N>`.

`repaired_corpus` writes the repaired copy (or returns the original when nothing needs doing)
and says what it changed, so results can report it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["COLLECTIONS", "collection_dir", "repaired_corpus"]

COLLECTIONS = ("med", "cisi", "cran", "cacm")
_HERE = Path(__file__).resolve()


def collection_dir(name: str) -> Path:
    """`$COE_SHARED_DATA/classic_ir/<name>` (default: the workspace's ../shared/data)."""
    root = os.environ.get("COE_SHARED_DATA")
    base = Path(root) if root else _HERE.parents[2].parent / "shared" / "data"
    return base / "classic_ir" / name


def repaired_corpus(source: Path, out_dir: Path) -> tuple[Path, list[str]]:
    """(`path`, `changes`): `source` itself when valid, else a repaired copy in `out_dir`."""
    lines, changes, seen = [], [], set()
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not (str(record.get("text", "")).strip() or str(record.get("title", "")).strip()):
            changes.append(f"line {number}: id {record.get('_id')!r} is empty, dropped")
            continue
        if record["_id"] in seen:
            renamed = f"{record['_id']}-line{number}"
            changes.append(f"line {number}: repeated id {record['_id']!r} renamed {renamed!r}")
            record["_id"] = renamed
        seen.add(record["_id"])
        lines.append(json.dumps(record, ensure_ascii=False))
    if not changes:
        return source, []
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.parent.name}-corpus.jsonl"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target, changes
