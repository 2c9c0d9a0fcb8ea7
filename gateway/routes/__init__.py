"""HTTP routes, one module per resource."""

from gateway.routes import admin, chat, health, models, route

__all__ = ["admin", "chat", "health", "models", "route"]
