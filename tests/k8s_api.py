"""A local HTTP stand-in of the Kubernetes API for Services: recorded list and watch answers.

It serves ``GET /api/v1/namespaces/<ns>/services`` as kube-apiserver does, from a script:

* without ``watch``: the next `ServiceList` body of `lists` (the last one again when used up);
* with ``watch=true``: the next `WatchScript` of `watches`, one JSON event per line in a chunked
  200 response, ended as the script says: ``close`` (the server's timeout: a clean end),
  ``drop`` (half of one more event, then the connection is cut), ``gone`` (an ERROR event
  carrying a 410 Status, what the API server sends for a too old resourceVersion) or
  ``gone_status`` (an HTTP 410 answer instead of a stream). With no script left, a watch is held
  open for `idle_s` and then closed cleanly, as the server's timeout would.

Every request is recorded (`requests`: kind, namespace, resourceVersion, labelSelector), so a
test can assert from which resourceVersion the client resumed. Loopback only.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

__all__ = ["ApiRequest", "K8sApi", "WatchScript", "k8s_api", "kubeconfig"]

End = Literal["close", "drop", "gone", "gone_status"]


@dataclass
class WatchScript:
    events: list[dict[str, Any]]
    end: End = "close"


@dataclass(frozen=True)
class ApiRequest:
    kind: Literal["list", "watch"]
    namespace: str
    resource_version: str | None
    label_selector: str | None


@dataclass
class K8sApi:
    lists: deque[dict[str, Any]] = field(default_factory=deque)
    watches: deque[WatchScript] = field(default_factory=deque)
    requests: list[ApiRequest] = field(default_factory=list)
    idle_s: float = 0.2
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_list(self) -> dict[str, Any]:
        with self.lock:
            return self.lists.popleft() if len(self.lists) > 1 else self.lists[0]

    def next_watch(self) -> WatchScript | None:
        with self.lock:
            return self.watches.popleft() if self.watches else None

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[ApiRequest]:
        """Block until `count` requests were made; the recorded requests."""
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.requests)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(api: K8sApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if (
                len(parts) != 5
                or parts[:3] != ["api", "v1", "namespaces"]
                or parts[4] != "services"
            ):
                self._json(404, _status(404, "NotFound", f"no route {url.path}"))
                return
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            watching = query.get("watch") in ("true", "1")
            api.requests.append(
                ApiRequest(
                    "watch" if watching else "list",
                    parts[3],
                    query.get("resourceVersion"),
                    query.get("labelSelector"),
                )
            )
            if watching:
                self._watch(api.next_watch(), query)
            else:
                self._json(200, api.next_list())

        def _json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _watch(self, script: WatchScript | None, query: dict[str, str]) -> None:
            if script is not None and script.end == "gone_status":
                version = query.get("resourceVersion")
                self._json(410, _status(410, "Expired", f"too old resource version: {version}"))
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if script is None:
                time.sleep(api.idle_s)
                self._chunk_end()
                return
            for event in script.events:
                self._chunk(json.dumps(event).encode() + b"\n")
            if script.end == "drop":
                half = json.dumps({"type": "DELETED", "object": {"kind": "Service"}}).encode()
                self._chunk(half[: len(half) // 2])
                self.close_connection = True
                self.connection.shutdown(2)  # cut: no final chunk
                return
            if script.end == "gone":
                version = query.get("resourceVersion")
                expired = _status(410, "Expired", f"too old resource version: {version}")
                self._chunk(json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n")
            self._chunk_end()

        def _chunk_end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


@contextmanager
def k8s_api(api: K8sApi) -> Iterator[K8sApi]:
    """Serve `api` on 127.0.0.1 (a free port) while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(path: Path, url: str, namespace: str = "default") -> Path:
    """A kubeconfig file naming the stand-in (no credentials: it asks for none)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": {}}],
                "contexts": [
                    {
                        "name": "stand-in",
                        "context": {
                            "cluster": "stand-in",
                            "user": "tester",
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": "stand-in",
            }
        )
    )
    return path
