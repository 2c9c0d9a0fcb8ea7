from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routers.artifact import (
    ArtifactError,
    ArtifactFamily,
    Manifest,
    load_artifact,
    read_manifest,
    save_artifact,
)


def manifest() -> Manifest:
    return Manifest(
        ArtifactFamily.CLASSIFIER, "logistic", embedder_id="e", data_hash="h", labels=("a", "b")
    )


def test_round_trip(tmp_path: Path) -> None:
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "terms": np.array(["x", "yz"])}
    written = save_artifact(tmp_path, manifest(), arrays)
    loaded, got = load_artifact(tmp_path)
    assert loaded == written and loaded.labels == ("a", "b") and loaded.created
    assert np.array_equal(got["w"], arrays["w"]) and got["terms"].tolist() == ["x", "yz"]


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not storable"):
        save_artifact(tmp_path, manifest(), {"w": np.array([{"a": 1}], dtype=object)})


def test_tampered_weights_are_detected(tmp_path: Path) -> None:
    save_artifact(tmp_path, manifest(), {"w": np.ones(3, np.float32)})
    np.savez(tmp_path / "weights.npz", w=np.zeros(3, np.float32))
    with pytest.raises(ArtifactError, match="SHA-256"):
        load_artifact(tmp_path)


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    save_artifact(tmp_path, manifest(), {"w": np.ones(3, np.float32)})
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="format_version 99"):
        read_manifest(tmp_path)


def test_pickled_weights_never_load(tmp_path: Path) -> None:
    save_artifact(tmp_path, manifest(), {"w": np.ones(3, np.float32)})
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import zipfile

    with zipfile.ZipFile(tmp_path / "weights.npz", "w") as z:
        z.write(tmp_path / "obj.npy", "w.npy")
    data = json.loads((tmp_path / "manifest.json").read_text())
    import hashlib

    data["weights_sha256"] = hashlib.sha256((tmp_path / "weights.npz").read_bytes()).hexdigest()
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"not a plain \.npz"):
        load_artifact(tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a router artifact"):
        load_artifact(tmp_path / "nope")
