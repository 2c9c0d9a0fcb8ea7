"""A loopback TCP proxy that breaks connections on demand: the gateway's view of a worker that
dies. In front of the real vLLM worker it turns into a killed worker without killing the session's
worker (which other tests share).

    with fault_proxy(127.0.0.1, 8000) as proxy:      # proxy.url: http://127.0.0.1:<port>
        proxy.kill()               # open connections reset, new ones refused (a dead worker)
        proxy.cut_after = 600      # a streamed (SSE) answer is reset 600 bytes after it began
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

__all__ = ["FaultProxy", "fault_proxy"]


@dataclass
class FaultProxy:
    target: tuple[str, int]
    refuse: bool = False
    cut_after: int | None = None
    url: str = ""
    cuts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: set[socket.socket] = field(default_factory=set)

    def kill(self) -> None:
        """The worker dies: every open connection is reset, new ones are refused."""
        self.refuse = True
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _reset(sock)


def _reset(sock: socket.socket) -> None:
    """End the connection now, as a killed process's socket would: shut down first (it wakes
    the other direction's thread blocked in recv, which a bare close would not), then close
    with RST (SO_LINGER 0)."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


def _pipe(src: socket.socket, dst: socket.socket, proxy: FaultProxy, answers: bool) -> None:
    """Copy src -> dst. On the answer direction, once an SSE answer starts and `cut_after` is
    armed, reset both sockets after that many bytes of it."""
    streamed = -1  # bytes of the current SSE answer; -1: none seen
    try:
        while True:
            data = src.recv(4096)
            if not data:
                dst.shutdown(socket.SHUT_WR)
                return
            if answers and streamed < 0 and b"text/event-stream" in data:
                streamed = 0
            limit = proxy.cut_after
            if answers and streamed >= 0 and limit is not None and streamed + len(data) > limit:
                dst.sendall(data[: max(0, limit - streamed)])
                with proxy._lock:
                    proxy.cuts += 1
                _reset(dst)
                _reset(src)
                return
            dst.sendall(data)
            if streamed >= 0:
                streamed += len(data)
    except OSError:
        _reset(dst)


def _serve(listener: socket.socket, proxy: FaultProxy) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        if proxy.refuse:
            _reset(client)
            continue
        upstream = socket.create_connection(proxy.target)
        with proxy._lock:
            proxy._open |= {client, upstream}
        threading.Thread(target=_pipe, args=(client, upstream, proxy, False), daemon=True).start()
        threading.Thread(target=_pipe, args=(upstream, client, proxy, True), daemon=True).start()


@contextmanager
def fault_proxy(host: str, port: int) -> Iterator[FaultProxy]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    proxy = FaultProxy((host, port), url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    threading.Thread(target=_serve, args=(listener, proxy), daemon=True).start()
    try:
        yield proxy
    finally:
        listener.close()
