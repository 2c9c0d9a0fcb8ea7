"""Versioned router artifacts: a directory with `manifest.json` and `weights.npz`, no pickle.

    my-router/
      manifest.json   format_version, kind, embedder_id, data_hash, labels, experts, params,
                      metrics, created, and the name/shape/dtype and SHA-256 of every array
      weights.npz     the arrays, read with numpy.load(allow_pickle=False)

`save_artifact` writes the weights first and the manifest last, each through a temporary file
and an atomic rename, and the manifest records the weights' SHA-256: a reader that races a
writer gets an `ArtifactError` (and the gateway keeps its current router), never a half-loaded
model. `load_artifact` validates everything it reads; nothing is unpickled, no code is run.

Lifecycle::

    manifest = Manifest(ArtifactFamily.CLASSIFIER, "logistic", embedder_id="...", ...)
    save_artifact(path, manifest, {"weights": w, "bias": b})
    manifest, arrays = load_artifact(path)        # ArtifactError on anything unexpected
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "WEIGHTS_FILE",
    "ArtifactError",
    "ArtifactFamily",
    "Manifest",
    "load_artifact",
    "read_manifest",
    "save_artifact",
]

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.npz"
_ALLOWED_KINDS = ("i", "u", "f", "b", "U")  # numeric, bool and unicode arrays: never objects

Arrays = Mapping[str, npt.NDArray[Any]]


class ArtifactError(ValueError):
    """An artifact directory that cannot be loaded (missing, corrupt, or of another version)."""


class ArtifactFamily(enum.StrEnum):
    """What a router artifact predicts."""

    CLASSIFIER = "classifier"
    """Category probabilities; the registry's experts declare the categories they serve."""
    SCORER = "scorer"
    """A predicted quality per expert (the CoE map included: classifier + category table)."""
    INDEX = "index"
    """A retriever's corpus index (`experts.retrieval`): passages, vectors/BM25, pilots."""


@dataclass(frozen=True)
class Manifest:
    """What an artifact is. `labels` for category classifiers, `experts` for expert scorers.

    On disk the family and the model kind are one string, `"kind": "<family>/<kind>"`
    (`"classifier/logistic"`); `tag` gives it back.
    """

    family: ArtifactFamily
    kind: str
    embedder_id: str
    data_hash: str = ""
    labels: tuple[str, ...] = ()
    experts: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION
    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights_sha256: str = ""

    @property
    def tag(self) -> str:
        """`family/kind`, as the manifest file and the router's name spell it."""
        return f"{self.family.value}/{self.kind}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "kind": self.tag,
            "embedder_id": self.embedder_id,
            "data_hash": self.data_hash,
            "labels": list(self.labels),
            "experts": list(self.experts),
            "params": self.params,
            "metrics": self.metrics,
            "created": self.created,
            "arrays": self.arrays,
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = MANIFEST_FILE) -> Manifest:
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: expected a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"{where}: format_version {version!r} is not supported (this build reads "
                f"{FORMAT_VERSION})"
            )
        try:
            family, kind = _family_and_kind(_typed(data, "kind", str))
            manifest = cls(
                family=family,
                kind=kind,
                embedder_id=_typed(data, "embedder_id", str),
                data_hash=_typed(data, "data_hash", str),
                labels=tuple(_strings(data, "labels")),
                experts=tuple(_strings(data, "experts")),
                params=_typed(data, "params", dict),
                metrics=_typed(data, "metrics", dict),
                created=_typed(data, "created", str),
                arrays=_typed(data, "arrays", dict),
                weights_sha256=_typed(data, "weights_sha256", str),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: {exc.args[0]}") from exc
        return manifest


def _family_and_kind(tag: str) -> tuple[ArtifactFamily, str]:
    family, _, kind = tag.partition("/")
    families = ", ".join(f.value for f in ArtifactFamily)
    if family not in set(ArtifactFamily) or not kind:
        raise ValueError(f"'kind' must be '<family>/<kind>' with a family of {families}: {tag!r}")
    return ArtifactFamily(family), kind


def _typed(data: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise KeyError(f"missing {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise TypeError(f"{key!r} must be a {kind.__name__}")
    return value


def _strings(data: Mapping[str, Any], key: str) -> list[str]:
    values = _typed(data, key, list)
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"{key!r} must be a list of strings")
    return list(values)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(array: npt.NDArray[Any]) -> dict[str, Any]:
    return {"shape": list(array.shape), "dtype": array.dtype.str}


def save_artifact(directory: Path, manifest: Manifest, arrays: Arrays) -> Manifest:
    """Write `arrays` and `manifest` into `directory` (created if needed); returns the manifest
    as written (with `created`, the array descriptions and the weights hash filled in)."""
    for name, array in arrays.items():
        if np.asarray(array).dtype.kind not in _ALLOWED_KINDS:
            raise ArtifactError(f"array {name!r}: dtype {np.asarray(array).dtype} is not storable")
    directory.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}"
    weights_tmp = directory / f".{WEIGHTS_FILE}.{tag}.npz"
    plain = {name: np.asarray(array) for name, array in arrays.items()}
    np.savez(weights_tmp, **plain)  # type: ignore[arg-type]
    weights_tmp.replace(directory / WEIGHTS_FILE)
    written = replace(
        manifest,
        format_version=FORMAT_VERSION,
        created=manifest.created or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        arrays={name: _describe(array) for name, array in plain.items()},
        weights_sha256=_sha256(directory / WEIGHTS_FILE),
    )
    manifest_tmp = directory / f".{MANIFEST_FILE}.{tag}"
    manifest_tmp.write_text(json.dumps(written.to_json(), indent=2, sort_keys=True) + "\n")
    manifest_tmp.replace(directory / MANIFEST_FILE)
    return written


def read_manifest(directory: Path) -> Manifest:
    """The validated manifest alone (cheap: for listing artifacts or checking for changes)."""
    path = directory / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{directory}: no {MANIFEST_FILE} (not a router artifact)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from exc
    return Manifest.from_json(data, str(path))


def load_artifact(directory: Path) -> tuple[Manifest, dict[str, npt.NDArray[Any]]]:
    """The manifest and arrays of an artifact, after checking hash, names, shapes and dtypes."""
    manifest = read_manifest(directory)
    weights = directory / WEIGHTS_FILE
    try:
        digest = _sha256(weights)
    except OSError as exc:
        raise ArtifactError(f"{weights}: unreadable ({exc})") from exc
    if digest != manifest.weights_sha256:
        raise ArtifactError(f"{weights}: SHA-256 differs from the manifest (partial write?)")
    try:
        with np.load(weights, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{weights}: not a plain .npz ({exc})") from exc
    if set(arrays) != set(manifest.arrays):
        raise ArtifactError(
            f"{weights}: arrays {sorted(arrays)} differ from the manifest's "
            f"{sorted(manifest.arrays)}"
        )
    for name, array in arrays.items():
        if _describe(array) != manifest.arrays[name]:
            raise ArtifactError(
                f"{weights}: array {name!r} is {_describe(array)}, "
                f"the manifest says {manifest.arrays[name]}"
            )
    return manifest, arrays
