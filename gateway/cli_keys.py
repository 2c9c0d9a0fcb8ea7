"""`coe keys create | list | revoke`: client API keys, through the admin API (`--url`) or the
registry's store directly (`-c CONFIG`: the SQLite file or Redis the gateway uses)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli_common import ConfigOpt, UrlOpt, admin_client, checked, settings_or_exit
from gateway.keys import KeyExists, KeyNotFound, KeyRequest, KeyStore, new_key

__all__ = ["register"]

T = TypeVar("T")
keys_app = typer.Typer(help="Create, list and revoke client API keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def _direct(config: Path | None, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    from gateway.key_stores import key_store

    store = key_store(settings_or_exit(config).registry.resolved_url())

    async def run() -> T:
        await store.open()
        try:
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except KeyExists as exc:
        typer.echo(f"error: a key named {exc} exists", err=True)
        raise typer.Exit(1) from None
    except KeyNotFound as exc:
        typer.echo(f"error: no key with id or name {exc}", err=True)
        raise typer.Exit(1) from None


def _admin(url: str, method: str, path: str, body: Any = None) -> Any:
    with admin_client(url) as client:
        return checked(client.request(method, path, json=body))


@keys_app.command("create")
def keys_create(
    name: str,
    expert: Annotated[list[str] | None, typer.Option("--expert", help="Allowed expert.")] = None,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Allowed category's experts.")
    ] = None,
    no_fusion: Annotated[bool, typer.Option("--no-fusion", help="May not ask for fusion.")] = False,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute, at most.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute, at most.")] = None,
    budget: Annotated[float | None, typer.Option(help="Spend, in expert cost units.")] = None,
    config: ConfigOpt = None,
    url: UrlOpt = None,
) -> None:
    """Create a key; it is printed once (stores keep only its hash)."""
    try:
        request = KeyRequest(
            name=name,
            experts=expert,
            categories=category,
            fusion=not no_fusion,
            rpm=rpm,
            tpm=tpm,
            budget=budget,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if url:
        created = _admin(url, "POST", "/admin/keys", request.model_dump())
        key, shown = created["key"], created["id"]
    else:
        key, record = new_key(request)
        _direct(config, lambda store: store.create(record))
        shown = record.id
    typer.echo(f"created {name} ({shown}); the key, shown only now:", err=True)
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List keys (never the keys themselves)."""
    if url:
        rows = _admin(url, "GET", "/admin/keys")
    else:
        records = _direct(config, lambda store: store.list())
        rows = [record.info().model_dump(mode="json") for record in records]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        allowed = ",".join((row["experts"] or []) + (row["categories"] or [])) or "any expert"
        typer.echo(f"{row['id']}  {row['name']:<20} {row['shown']:<16} {state:<8} {allowed}")


@keys_app.command("usage")
def keys_usage(ident: str, url: Annotated[str, typer.Option(help="Gateway base URL.")]) -> None:
    """A key's requests, tokens and spend (from a running gateway: limits live there)."""
    typer.echo(json.dumps(_admin(url, "GET", f"/admin/keys/{ident}/usage"), indent=2))


@keys_app.command("revoke")
def keys_revoke(ident: str, config: ConfigOpt = None, url: UrlOpt = None) -> None:
    """Revoke a key by id or name: refused from the next request on."""
    if url:
        _admin(url, "DELETE", f"/admin/keys/{ident}")
    else:
        _direct(config, lambda store: store.revoke(ident))
    typer.echo(f"revoked {ident}")
