"""What the `coe` subcommands share: the `-c`/`--url` options, the settings (refused with
exit code 2 and the key named), and the admin API client with its error reporting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from gateway.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigOpt", "UrlOpt", "admin_client", "checked", "settings_or_exit"]

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (or env COE_CONFIG).")
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Gateway base URL: use its admin API (key from COE_ADMIN_KEY) "
        "instead of opening the registry directly.",
    ),
]


def settings_or_exit(config: Path | None, **overrides: Any) -> Settings:
    try:
        settings = load_settings(config, **overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    check_retrievers(settings)
    return settings


def check_retrievers(settings: Settings) -> None:
    """The configured retrievers' indexes load (a missing or corrupt one is named now, not in a
    start-up traceback)."""
    from experts.retriever import with_pilots

    for i, spec in enumerate(settings.experts):
        if spec.kind.value != "retriever" or spec.endpoint:
            continue
        try:
            with_pilots(spec)
        except ValueError as exc:
            typer.echo(f"error: experts[{i}] ({spec.name}) options.index: {exc}", err=True)
            raise typer.Exit(2) from None


def admin_client(url: str) -> httpx.Client:
    key = os.environ.get("COE_ADMIN_KEY")
    if not key:
        typer.echo("error: set COE_ADMIN_KEY to use the admin API", err=True)
        raise typer.Exit(2)
    return httpx.Client(
        base_url=url.rstrip("/"), headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def checked(response: httpx.Response) -> Any:
    if response.is_error:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        typer.echo(f"error: {response.status_code}: {message}", err=True)
        raise typer.Exit(1)
    return response.json()
