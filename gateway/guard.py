"""`SpecGuard`: what an expert spec may point at, checked before it enters the registry.

Every registry write path asks it: the admin API (add, patch), `coe experts add`, config
seeding at start-up and Kubernetes discovery; the pool asks again before it builds an expert
(a spec stored by hand or by an older version is not routable either). Three rules
(`security` settings):

    endpoint      its host, and every address the host resolves to, passes
                  security.endpoint_allow / endpoint_deny (`gateway/netguard.py`; connections
                  are checked again at call time, `gateway/guarded_http.py`)
    api_key_env   starts with one of security.api_key_env_prefixes, and is never COE_*
    model         (kind local) a packaged model id, or a path under security.model_dirs once
                  `~`, `..` and symlinks are resolved

A refusal is `SpecRefused` (a `ValueError`) whose `param` names the field.
"""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import httpx

from gateway.netguard import EndpointRefused, HostPolicy, checked_addresses
from gateway.settings import ConfigError, SecuritySettings
from registry.spec import ExpertKind, ExpertSpec

__all__ = [
    "PACKAGED_MODELS",
    "RESERVED_ENV_PREFIX",
    "SpecGuard",
    "SpecRefused",
    "acheck_configured",
    "check_configured",
]

RESERVED_ENV_PREFIX = "COE_"
"""The gateway's own settings and secrets (COE_ADMIN_KEY, COE_REGISTRY__URL, ...)."""
PACKAGED_MODELS = frozenset({"smollm2"})
"""Local model ids that are not paths (`experts.local_models.DEFAULT_SOURCE`)."""


class SpecRefused(ValueError):
    """A spec the security settings do not allow; `param` names the offending field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class SpecGuard:
    """The `security` settings, applied to specs (module docstring)."""

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings
        self.policy = HostPolicy(settings.endpoint_allow, settings.endpoint_deny)
        self._prefixes = tuple(settings.api_key_env_prefixes)

    def check(self, spec: ExpertSpec) -> None:
        """Every rule that needs no DNS; `SpecRefused` naming the field."""
        if spec.endpoint:
            host, _ = self._host_port(spec.endpoint)
            if (reason := self.policy.name_refusal(host)) is not None:
                raise SpecRefused("endpoint", reason)
        if spec.api_key_env is not None:
            self.check_api_key_env(spec.api_key_env)
        if spec.kind is ExpertKind.LOCAL and spec.model is not None:
            self.check_model_path(spec.model)

    def check_resolved(self, spec: ExpertSpec) -> None:
        """`check`, and the endpoint's host resolved now (blocking: a worker thread's job).
        A name that does not resolve yet is accepted: every connection checks it again."""
        self.check(spec)
        if spec.endpoint:
            host, port = self._host_port(spec.endpoint)
            try:
                checked_addresses(self.policy, host, port, strict=False)
            except EndpointRefused as exc:
                raise SpecRefused("endpoint", str(exc)) from None

    async def acheck(self, spec: ExpertSpec) -> None:
        """`check_resolved` with DNS off the event loop (the cheap rules first)."""
        self.check(spec)
        await anyio.to_thread.run_sync(self.check_resolved, spec)

    def check_api_key_env(self, name: str) -> None:
        if name.startswith(RESERVED_ENV_PREFIX):
            raise SpecRefused(
                "api_key_env",
                f"{name} is one of the gateway's own settings (COE_*); an expert never gets it",
            )
        if not name.startswith(self._prefixes):
            allowed = ", ".join(f"{p}*" for p in self._prefixes) or "none (the list is empty)"
            raise SpecRefused(
                "api_key_env",
                f"{name} is not an expert key variable: security.api_key_env_prefixes allows "
                f"{allowed}",
            )

    def check_model_path(self, model: str) -> None:
        if model in PACKAGED_MODELS:
            return
        path = Path(model).expanduser()
        try:
            resolved = path.resolve()
            roots = [d.resolve() for d in self.settings.model_dirs]
        except (OSError, RuntimeError) as exc:  # a symlink loop, ...
            raise SpecRefused("model", f"{model!r} cannot be resolved: {exc}") from None
        if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            dirs = ", ".join(str(d) for d in self.settings.model_dirs) or "none"
            shown = model if str(resolved) == model else f"{model} (= {resolved})"
            raise SpecRefused(
                "model",
                f"{shown} is not under a model directory (security.model_dirs: {dirs}); "
                f"packaged models: {', '.join(sorted(PACKAGED_MODELS))}",
            )

    @staticmethod
    def _host_port(endpoint: str) -> tuple[str, int]:
        """Parsed as the HTTP client parses it, so both see the same host."""
        try:
            url = httpx.URL(endpoint)
        except httpx.InvalidURL as exc:
            raise SpecRefused("endpoint", f"not a valid URL: {exc}") from None
        if not url.host:
            raise SpecRefused("endpoint", "the URL has no host")
        return url.host, url.port or (443 if url.scheme == "https" else 80)


def check_configured(guard: SpecGuard, specs: list[ExpertSpec]) -> None:
    """The configured experts pass the rules that need no DNS; otherwise `ConfigError` naming
    each key as `load_settings` does (`experts.2.api_key_env (geo): ...`)."""
    errors = []
    for i, spec in enumerate(specs):
        try:
            guard.check(spec)
        except SpecRefused as exc:
            errors.append(f"  experts.{i}.{exc.param} ({spec.name}): {exc.message}")
    if errors:
        raise ConfigError("invalid configuration (security):\n" + "\n".join(errors))


async def acheck_configured(guard: SpecGuard, index: int, spec: ExpertSpec) -> None:
    """`experts[index]` passes every rule, its endpoint's addresses included (seeding)."""
    try:
        await guard.acheck(spec)
    except SpecRefused as exc:
        raise ConfigError(
            f"invalid configuration (security):\n  experts.{index}.{exc.param} ({spec.name}): "
            f"{exc.message}"
        ) from None
