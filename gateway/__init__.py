"""coe-gateway: an OpenAI-compatible composition-of-experts gateway."""

from gateway.settings import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # lazy: importing the package must not load FastAPI + routers
        from gateway.app import create_app

        return create_app
    raise AttributeError(name)
