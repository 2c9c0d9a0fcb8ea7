"""`Settings`: the one typed configuration object, built once by `create_app` / `coe serve`.

Sources, highest priority first: keyword arguments > `COE_*` environment variables (nested keys
with `__`, e.g. `COE_SERVER__PORT=9000`) > the YAML file (`--config` / `COE_CONFIG`, or the
built-in `gateway/defaults.yaml` when none is given) > field defaults. Unknown keys and bad values
are refused at start-up with the offending key named. Secrets (the admin key) come from the
environment only; upstream API keys are named per expert (`api_key_env`) and read from the
environment when the expert is built.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.fusion.base import FusionKind
from gateway.retrieval_mode import RetrievalMode
from registry.spec import ExpertSpec
from routers.config import RouterConfig

__all__ = [
    "AffinitySettings",
    "AuthSettings",
    "ConfigError",
    "DiscoverySettings",
    "FusionSettings",
    "HealthSettings",
    "KubernetesDiscoverySettings",
    "LimitSettings",
    "LocalSettings",
    "RegistrySettings",
    "ServerSettings",
    "Settings",
    "UpstreamSettings",
    "load_settings",
]

DEFAULT_CONFIG = "defaults.yaml"
_ENV_ONLY = ("admin_key",)


class ConfigError(Exception):
    """The configuration is invalid; the message names every offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


MAX_BODY_BYTES = 32 * 1024 * 1024
"""32 MiB: a 128k-token prompt (about 0.5 MB of text) with several base64 images of a few MB
each fits (OpenAI takes images of up to 20 MB); a body is held in memory while it is parsed, so
the limit stays finite."""


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(
        default=MAX_BODY_BYTES, ge=1024, description="Larger request bodies get 413."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line, with the request id."
    )


class RegistrySettings(_Strict):
    url: str = Field(
        default="sqlite:///~/.local/share/coe-gateway/registry.db",
        description="sqlite:///PATH (embedded default), redis://HOST:PORT/DB or memory://",
    )
    seed: bool = Field(
        default=True,
        description="On first start (registry never seeded), add the `experts` of this config.",
    )

    def resolved_url(self) -> str:
        """The URL with `~` expanded in a sqlite path."""
        prefix = "sqlite:///"
        if self.url.startswith(prefix) and self.url[len(prefix) :].startswith("~"):
            return prefix + str(Path(self.url[len(prefix) :]).expanduser())
        return self.url


class UpstreamSettings(_Strict):
    max_connections: int = Field(default=512, ge=1)
    max_keepalive_connections: int = Field(default=128, ge=0)
    keepalive_expiry_s: float = Field(default=30.0, gt=0)
    failover: int = Field(
        default=1,
        ge=0,
        le=8,
        description="How many next-best experts to try when one fails before its first byte.",
    )
    breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failures that take an expert out of rotation."
    )
    breaker_cooldown_s: float = Field(default=10.0, gt=0)


class AffinitySettings(_Strict):
    """Which requests go back to an expert that answered before (`gateway/affinity.py`)."""

    tool_calls: bool = Field(
        default=True,
        description="A request carrying tool results goes to the expert that issued the calls.",
    )
    conversations: bool = Field(
        default=False,
        description="Later turns of a conversation stay on the expert of its first routed turn "
        "(a conversation without the x-coe-conversation header is its user field and first "
        "turns). Off: every turn is routed on its own last user message.",
    )
    ttl_s: float = Field(default=3600.0, gt=0, description="How long an affinity lasts.")
    max_entries: int = Field(
        default=100_000, ge=1, description="In-process store only: entries kept at most."
    )


class FusionSettings(_Strict):
    """Output-level fusion (`gateway/fusion/`): off unless a default or a category turns it on."""

    default: FusionKind = Field(
        default=FusionKind.NONE, description="Strategy for every routed request."
    )
    categories: dict[str, FusionKind] = Field(
        default_factory=dict, description="Strategy per router category, over the default."
    )
    k: int = Field(default=3, ge=2, le=16, description="Candidates fused (at most).")
    router_rule: bool = Field(
        default=True,
        description="Apply the fan-out rule a trained router artifact records (`coe train "
        "--fusion adaptive`) where no category setting applies.",
    )
    adaptive_mass: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Adaptive fan-out: > 0 calls experts of the likeliest categories until "
        "their probability reaches this mass (one expert when the router is sure); 0: always k.",
    )
    deadline_s: float = Field(
        default=30.0, gt=0, le=600, description="Candidates that have not answered are dropped."
    )
    judge: str | None = Field(default=None, description="The expert that judges (`judge`).")
    aggregator: str | None = Field(
        default=None, description="The expert that synthesises (`aggregate`)."
    )
    cascade_first: int = Field(
        default=2, ge=1, le=8, description="`cascade`: how many of the cheapest are asked first."
    )
    cascade_confidence: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="`cascade`: a router this sure of its category asks the cheapest alone.",
    )


class RetrievalSettings(_Strict):
    """Retrieval-gated answers (`gateway/retrieval.py`): when the router puts a retriever's
    domain first with at least `threshold` probability."""

    mode: RetrievalMode = Field(
        default=RetrievalMode.CONTEXT,
        description="context: passages in the best LLM's context, which cites their ids; "
        "passages: the passages themselves; off: LLMs only.",
    )
    routes: dict[str, RetrievalMode] = Field(
        default_factory=dict, description="Mode per retriever (its name), over `mode`."
    )
    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Router probability of the domain to retrieve."
    )
    also_above: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Once gated, further domains at this probability or above are searched too "
        "and fused.",
    )
    max_retrievers: int = Field(default=2, ge=1, le=8, description="Domains used, at most.")
    choose_by: Literal["similarity", "router"] = Field(
        default="similarity",
        description="similarity: once gated, the `candidates` most probable domains are searched "
        "and those whose passages are most similar to the query are used (router: the router's "
        "probabilities alone; also when an index gives no similarity, e.g. lexical).",
    )
    candidates: int = Field(
        default=4, ge=1, le=8, description="Domains searched to choose from (choose_by similarity)."
    )
    k: int = Field(default=5, ge=1, le=50, description="Passages returned or put in context.")
    context_chars: int = Field(
        default=6000, ge=200, le=200_000, description="Passage text put in context (at most)."
    )


class AuthSettings(_Strict):
    """Client keys for `/v1/*` (`gateway/auth.py`)."""

    client_keys: Literal["auto", "required", "off"] = Field(
        default="auto",
        description="auto: on a loopback address open until the first key exists, then "
        "required; on any other address always required. required: always. off: open (on a "
        "non-loopback address only with allow_open).",
    )
    allow_open: bool = Field(
        default=False,
        description="Let client_keys: off serve on a non-loopback address (no key needed).",
    )


class HealthSettings(_Strict):
    """Background probes of remote experts (`gateway/prober.py`)."""

    probe_interval_s: float = Field(
        default=10.0, ge=0, description="Probe every remote expert this often; 0: no probes."
    )
    probe_timeout_s: float = Field(default=3.0, gt=0, description="A probe slower fails.")


class LimitSettings(_Strict):
    """Per-key rate limits and budgets (`gateway/quotas.py`); the limits live on each key."""

    on_store_failure: Literal["open", "closed"] = Field(
        default="open",
        description="When the limit store (Redis) cannot be reached: open admits requests "
        "unlimited (logged), closed answers 503.",
    )


class KubernetesDiscoverySettings(_Strict):
    """Labelled Services as experts (`registry/k8s_discovery.py`)."""

    enabled: bool = False
    namespaces: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Namespaces watched; empty: the pod's own (its service account's).",
    )
    label: str = Field(
        default="coe.io/expert",
        min_length=1,
        description="Label selector of expert Services; the label's value is the expert's name.",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="A kubeconfig file; None: the in-cluster service account in a pod, else "
        "$KUBECONFIG or ~/.kube/config.",
    )
    watch_timeout_s: int = Field(default=300, ge=1, le=3600)
    resync_s: float = Field(default=600.0, gt=0, description="A full LIST this often.")
    retry_s: float = Field(default=1.0, gt=0, description="First backoff after an error.")
    initial_sync_s: float = Field(
        default=10.0, ge=0, description="At start, wait this long for the first LIST."
    )


class DiscoverySettings(_Strict):
    kubernetes: KubernetesDiscoverySettings = Field(default_factory=KubernetesDiscoverySettings)


def _default_model_dirs() -> list[Path]:
    from experts.weights import default_cache_dir  # stdlib only

    return [default_cache_dir() / "models"]  # where `coe models prepare` writes


class SecuritySettings(_Strict):
    """What a registered expert may reach (`gateway/guard.py`, `gateway/netguard.py`) and the
    registry's change history."""

    endpoint_allow: list[str] = Field(
        default_factory=list,
        max_length=1024,
        description="Hosts (`*.example.com` for subdomains), IPs or CIDRs an endpoint may point "
        "at, checked on the name and on every address it resolves to; empty: any address not "
        "in endpoint_deny. endpoint_deny wins over this.",
    )
    endpoint_deny: list[str] = Field(
        default_factory=lambda: [
            *("169.254.0.0/16", "fe80::/10"),  # link-local: AWS/GCP/Azure/OCI metadata, ECS
            *("fd00:ec2::254", "100.100.100.200", "192.0.0.192"),  # AWS v6, Alibaba, Oracle
            "metadata.google.internal",
            *("0.0.0.0/8", "::/128", "224.0.0.0/4", "ff00::/8", "255.255.255.255"),
        ],
        max_length=1024,
        description="Hosts, IPs or CIDRs an endpoint may never point at (nor resolve to).",
    )
    api_key_env_prefixes: list[str] = Field(
        default_factory=lambda: ["EXPERT_", "OPENAI_API_KEY"],
        max_length=256,
        description="An expert's api_key_env must start with one of these; COE_* (the "
        "gateway's own settings and secrets) is always refused. Empty: no api_key_env at all.",
    )
    model_dirs: list[Path] = Field(
        default_factory=_default_model_dirs,
        max_length=256,
        description="Directories a local expert's model path must be under (after symlinks "
        "and '..'); packaged model ids (smollm2) are always allowed.",
    )
    history_max_entries: int = Field(
        default=1000, ge=1, le=1_000_000, description="Registry changes kept in the history."
    )

    @field_validator("endpoint_allow", "endpoint_deny")
    @classmethod
    def _rules(cls, value: list[str]) -> list[str]:
        from gateway.netguard import parse_rule

        for rule in value:
            parse_rule(rule)  # ValueError naming the entry
        return value

    @field_validator("api_key_env_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix or not prefix.replace("_", "A").isalnum() or not prefix.isupper():
                raise ValueError(f"{prefix!r} is not an upper-case variable name prefix")
            if prefix.startswith("COE_"):
                raise ValueError(f"{prefix!r}: COE_* variables are the gateway's own")
        return value

    @field_validator("model_dirs")
    @classmethod
    def _absolute(cls, value: list[Path]) -> list[Path]:
        dirs = [path.expanduser() for path in value]
        if bad := [str(path) for path in dirs if not path.is_absolute()]:
            raise ValueError(f"model directories must be absolute paths: {', '.join(bad)}")
        return dirs


class LocalSettings(_Strict):
    """In-process models (`kind: local` experts)."""

    torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="torch CPU threads (process-wide). None: half the cores, at least 1 "
        "(on a busy 2-core machine 1 thread generated several times faster than 2).",
    )
    dtype: Literal["float32", "bfloat16"] = "float32"

    def threads(self) -> int:
        return self.torch_threads or max(1, (os.cpu_count() or 2) // 2)


class Settings(BaseSettings):
    """The gateway's whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="COE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    config_file: Path | None = Field(default=None, exclude=True)
    server: ServerSettings = Field(default_factory=ServerSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    router: RouterConfig = Field(default_factory=RouterConfig)
    local: LocalSettings = Field(default_factory=LocalSettings)
    affinity: AffinitySettings = Field(default_factory=AffinitySettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    experts: list[ExpertSpec] = Field(
        default_factory=list, description="Experts seeded into an empty registry on first start."
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Bearer key for /admin (env COE_ADMIN_KEY only)."
    )

    @field_validator("admin_key")
    @classmethod
    def _strong_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("COE_ADMIN_KEY must be at least 16 characters")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(init_settings, InitSettingsSource)
        config_file = init_settings.init_kwargs.get("config_file")
        return (init_settings, env_settings, _YamlSource(settings_cls, config_file))


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file, or the built-in defaults when no file is named."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | str | None) -> None:
        super().__init__(settings_cls)
        self.path = Path(path) if path else None

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            text = resources.files("gateway").joinpath(DEFAULT_CONFIG).read_text("utf-8")
            where = "built-in defaults"
        else:
            try:
                text = self.path.read_text("utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read config file {self.path}: {exc.strerror}") from exc
            where = str(self.path)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping")
        for key in _ENV_ONLY:
            if key in data:
                raise ConfigError(
                    f"{where}: '{key}' is a secret; set it in the environment "
                    f"(COE_{key.upper()}), not in a file"
                )
        return data


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build and validate `Settings`; raise `ConfigError` naming each bad key."""
    if config_file is None and os.environ.get("COE_CONFIG"):
        config_file = os.environ["COE_CONFIG"]
    try:
        return Settings(config_file=Path(config_file) if config_file else None, **overrides)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        where = f" in {config_file}" if config_file else ""
        raise ConfigError(f"invalid configuration{where}:\n" + "\n".join(lines)) from None
