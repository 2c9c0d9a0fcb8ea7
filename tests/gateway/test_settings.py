"""Configuration: one YAML file validated at start-up, COE_* overrides, secrets from env only."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_builtin_default_has_local_experts_and_categories() -> None:
    settings = load_settings()
    assert [e.name for e in settings.experts] == ["smollm2", "smollm2-tutor"]
    assert {"math", "code"} <= set(settings.router.categories)
    assert settings.router.fallback == "smollm2"
    assert settings.registry.url.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("server:\n  prot: 80\n", "server.prot"),
        ("routr: {}\n", "routr"),
        ("server:\n  port: 99999\n", "server.port"),
        ("router:\n  kind: magic\n", "router.kind"),
        ("experts:\n  - {name: a, kind: local, colour: red}\n", "experts.0.colour"),
        ("upstream:\n  failover: -1\n", "upstream.failover"),
    ],
)
def test_bad_keys_and_values_are_refused_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text))
    assert named in str(caught.value)


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "server:\n  port: 9000\n  host: 0.0.0.0\n")
    monkeypatch.setenv("COE_SERVER__PORT", "9100")
    settings = load_settings(path)
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_CONFIG", str(_write(tmp_path, "server:\n  port: 9200\n")))
    assert load_settings().server.port == 9200


def test_admin_key_only_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="COE_ADMIN_KEY"):
        load_settings(_write(tmp_path, "admin_key: hunter2hunter2hunter2\n"))
    monkeypatch.setenv("COE_ADMIN_KEY", "a-long-enough-admin-key")
    settings = load_settings(_write(tmp_path, "{}\n"))
    assert settings.admin_key is not None
    assert "a-long-enough-admin-key" not in repr(settings)
    assert "a-long-enough-admin-key" not in str(settings.model_dump())


def test_short_admin_key_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_ADMIN_KEY", "short")
    with pytest.raises(ConfigError, match="admin_key"):
        load_settings()


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(_write(tmp_path, "server: [unclosed\n"))


def test_router_artifact_must_be_an_artifact(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"router\.artifact.*no manifest\.json"):
        load_settings(_write(tmp_path, f"router:\n  artifact: {empty}\n"))
    (empty / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"router\.artifact.*unreadable"):
        load_settings(_write(tmp_path, f"router:\n  artifact: {empty}\n"))
