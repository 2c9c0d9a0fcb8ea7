"""`coe experts restore`: refill a registry that lost its data (see gateway/routes/restore.py).

    coe experts restore --url http://replica:8000                 # that replica's last good table
    coe experts restore --url http://replica:8000 --file b.json   # a backup, through a replica
    coe experts restore -c coe.yaml --file b.json                 # a backup, straight into it

A backup is what `coe experts list --json` prints (a JSON list of expert specs).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError

from gateway.cli_common import ConfigOpt, UrlOpt, admin_client, checked, settings_or_exit
from registry.base import ExpertExists, RegistryError
from registry.spec import ExpertSpec

__all__ = ["register"]

_SPECS = TypeAdapter(list[ExpertSpec])


def register(experts_app: typer.Typer) -> None:
    experts_app.command("restore")(experts_restore)


def _backup(path: Path) -> list[ExpertSpec]:
    try:
        return _SPECS.validate_json(path.read_bytes())
    except OSError as exc:
        typer.echo(f"error: {path}: {exc.strerror}", err=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        typer.echo(f"error: {path}: {where}: {first['msg']}", err=True)
    raise typer.Exit(2)


def experts_restore(
    file: Annotated[Path | None, typer.Option(help="A backup (coe experts list --json).")] = None,
    config: ConfigOpt = None,
    url: UrlOpt = None,
) -> None:
    """Write experts back into a registry that lost its data; existing ones are kept."""
    specs = None if file is None else _backup(file)
    if url:
        body: dict[str, Any] = {}
        if specs is not None:
            body["experts"] = [s.model_dump(mode="json") for s in specs]
        with admin_client(url) as client:
            result = checked(client.post("/admin/experts/restore", json=body, timeout=120))
    elif specs is None:
        typer.echo("error: without --url, give --file (a backup) to restore from", err=True)
        raise typer.Exit(2)
    else:
        result = asyncio.run(_direct(config, specs))
    typer.echo(json.dumps(result, indent=2))


async def _direct(config: Path | None, specs: list[ExpertSpec]) -> dict[str, list[str]]:
    from gateway.pool import mark_registry
    from registry.factory import registry_from_url

    registry = registry_from_url(settings_or_exit(config).registry.resolved_url())
    try:
        await registry.open()
        restored, kept = [], []
        for spec in specs:
            try:
                await registry.add(spec, actor="cli:restore")
                restored.append(spec.name)
            except ExpertExists:
                kept.append(spec.name)
        await mark_registry(registry, restored=True)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        await registry.aclose()
    return {"restored": restored, "kept": kept}
