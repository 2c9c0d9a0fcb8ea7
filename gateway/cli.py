"""`coe`: serve the gateway, manage experts, run the vLLM-API simulator, prepare local weights.

coe serve [--config FILE] [--host H] [--port P]
coe experts list|add|remove|history  (direct to the configured registry, or --url to a gateway)
coe config check [FILE]              validate a config file and print the effective settings
coe models prepare                   convert SmolLM2 (GGUF -> safetensors) for local/vLLM use
coe simulate --port P ...            a vLLM-API *simulator* for load and fault tests
"""

from __future__ import annotations

import os

# numpy's BLAS threads and the embedder's torch threads fight over small machines (measured:
# embedding time doubled on 2 cores); one BLAS thread unless the user says otherwise. Set before
# numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from gateway.cli_common import ConfigOpt, UrlOpt
from gateway.cli_common import admin_client as _admin_client
from gateway.cli_common import checked as _check
from gateway.cli_common import settings_or_exit as _settings
from gateway.cli_index import register as register_index
from gateway.cli_keys import register as register_keys
from gateway.cli_restore import register as register_restore
from gateway.cli_routing import register as register_routing
from gateway.logs import setup_logging
from gateway.settings import ConfigError
from registry.base import RegistryError
from registry.factory import registry_from_url
from registry.history import Change, changed_fields
from registry.spec import ExpertKind, ExpertSpec

__all__ = ["app", "main"]

app = typer.Typer(help="coe-gateway: a composition-of-experts LLM gateway.", no_args_is_help=True)
experts_app = typer.Typer(
    help="Add, list and remove experts; show the registry's history.", no_args_is_help=True
)
config_app = typer.Typer(help="Validate and show configuration.", no_args_is_help=True)
models_app = typer.Typer(help="Prepare local model weights.", no_args_is_help=True)
app.add_typer(experts_app, name="experts")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
register_routing(app)
register_index(app)
register_keys(app)
register_restore(experts_app)

CLI_ACTOR = "cli"


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config).")] = None,
) -> None:
    """Run the gateway (embedded default: SQLite registry + local SmolLM2 experts)."""
    import uvicorn

    from gateway.app import create_app
    from gateway.auth import check_exposure

    settings = _settings(config)
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    setup_logging(server.log_level, server.log_format)
    # json: uvicorn's own text formatters stay out; its loggers propagate to the JSON root
    extra: dict[str, Any] = {"log_config": None} if server.log_format == "json" else {}
    settings = settings.model_copy(update={"server": server})
    try:
        check_exposure(settings.auth, server.host)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(
        create_app(settings),
        host=server.host,
        port=server.port,
        log_level=server.log_level,
        timeout_graceful_shutdown=30,
        **extra,
    )


@config_app.command("check")
def config_check(config: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Validate a config file (or the built-in default) and print the effective settings."""
    settings = _settings(config)
    data = settings.model_dump(mode="json", exclude={"admin_key"})
    data["admin_key"] = "set" if settings.admin_key else "unset (admin API disabled)"
    typer.echo(yaml.safe_dump(data, sort_keys=False))


@models_app.command("prepare")
def models_prepare(
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
) -> None:
    """Convert the packaged SmolLM2-135M-Instruct GGUF into a safetensors directory."""
    from experts.weights import prepare_smollm2

    typer.echo(str(prepare_smollm2(out)))


@app.command()
def simulate(
    host: str = "127.0.0.1",
    port: int = 8100,
    model: str = "sim",
    ttft_s: float = 0.05,
    inter_token_s: float = 0.01,
    completion_tokens: int = 32,
    failure_rate: float = 0.0,
) -> None:
    """Serve a vLLM-API SIMULATOR (no model: synthetic text) for load and fault tests."""
    from experts.simulator import SimulatorConfig
    from experts.simulator_app import serve_simulator

    sim = SimulatorConfig(
        model=model,
        ttft_s=ttft_s,
        inter_token_s=inter_token_s,
        completion_tokens=completion_tokens,
        failure_rate=failure_rate,
    )
    serve_simulator(sim, host, port)


# ---- experts ---------------------------------------------------------------------------------


async def _direct(config: Path | None, action: str, payload: Any = None) -> Any:
    from gateway.guard import SpecGuard

    settings = _settings(config)
    registry = registry_from_url(
        settings.registry.resolved_url(), history_max=settings.security.history_max_entries
    )
    await registry.open()
    try:
        if action == "list":
            return [s.model_dump(mode="json") for s in await registry.list()]
        if action == "history":
            return [c.model_dump(mode="json") for c in await registry.history(*payload)]
        if action == "add":
            SpecGuard(settings.security).check_resolved(payload)
            await registry.add(payload, actor=CLI_ACTOR)
            return payload.model_dump(mode="json")
        current = await registry.get(payload)
        if current is not None and current.managed_by is not None:  # discovery would re-add it
            raise RegistryError(
                f"expert {payload!r} is managed by {current.managed_by}: change or remove it there"
            )
        return (await registry.remove(payload, actor=CLI_ACTOR)).model_dump(mode="json")
    finally:
        await registry.aclose()


def _run(config: Path | None, action: str, payload: Any = None) -> Any:
    from gateway.guard import SpecRefused

    try:
        return asyncio.run(_direct(config, action, payload))
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except SpecRefused as exc:  # the security settings refuse it: a bad argument
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@experts_app.command("list")
def experts_list(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List registered experts."""
    if url:
        with _admin_client(url) as client:
            rows = _check(client.get("/admin/experts"))
    else:
        rows = _run(config, "list")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        cats = ",".join(row["categories"]) or "-"
        state = "enabled" if row["enabled"] else "disabled"
        target = row.get("endpoint") or row.get("model") or "-"
        typer.echo(
            f"{row['name']:24} {row['kind']:9} {state:8} cost={row['cost']:<6g} "
            f"categories={cats} {target}"
        )


@experts_app.command("add")
def experts_add(
    name: Annotated[str, typer.Argument(help="Unique expert name (also its model id).")],
    kind: Annotated[ExpertKind, typer.Option(help="openai | vllm | local | simulator")],
    endpoint: Annotated[str | None, typer.Option(help="e.g. http://10.0.0.5:8000/v1")] = None,
    model: Annotated[str | None, typer.Option(help="Upstream model id / LoRA name.")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Repeatable.")] = None,
    exemplar: Annotated[list[str] | None, typer.Option("--exemplar", help="Repeatable.")] = None,
    cost: float = 1.0,
    timeout_s: float = 60.0,
    max_concurrency: int = 16,
    api_key_env: Annotated[str | None, typer.Option(help="Env var holding its API key.")] = None,
    system_prompt: str | None = None,
    config: ConfigOpt = None,
    url: UrlOpt = None,
) -> None:
    """Register an expert; it is routable on the gateway's next request."""
    try:
        spec = ExpertSpec(
            name=name,
            kind=kind,
            endpoint=endpoint,
            model=model,
            categories=category or [],
            exemplars=exemplar or [],
            cost=cost,
            timeout_s=timeout_s,
            max_concurrency=max_concurrency,
            api_key_env=api_key_env,
            system_prompt=system_prompt,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if url:
        with _admin_client(url) as client:
            _check(client.post("/admin/experts", json=spec.model_dump(mode="json")))
    else:
        _run(config, "add", spec)
    typer.echo(f"added {name}")


@experts_app.command("remove")
def experts_remove(name: str, config: ConfigOpt = None, url: UrlOpt = None) -> None:
    """Remove an expert: no new requests go to it; in-flight ones finish."""
    if url:
        with _admin_client(url) as client:
            _check(client.delete(f"/admin/experts/{name}"))
    else:
        _run(config, "remove", name)
    typer.echo(f"removed {name}")


@experts_app.command("history")
def experts_history(
    name: Annotated[str | None, typer.Argument(help="Only this expert's changes.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    url: UrlOpt = None,
) -> None:
    """Show who changed which expert, when, and what (newest first; secrets redacted)."""
    if url:
        params: dict[str, str | int] = {"limit": limit} | ({"name": name} if name else {})
        with _admin_client(url) as client:
            rows = _check(client.get("/admin/experts/history", params=params))
    else:
        rows = _run(config, "history", (name, limit))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        change = Change.model_validate(row)
        fields = changed_fields(change)
        what = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in fields.items())
        typer.echo(
            f"{change.at}  {change.actor:24} {change.action:6} {change.name:24} {what}".rstrip()
        )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def main() -> None:
    """Entry point of the `coe` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
