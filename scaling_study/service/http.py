"""The HTTP server's connection limits: uvicorn's h11 protocol with a deadline for a request's
head, and the settings `scaling-study serve` runs uvicorn with.

uvicorn times out an idle keep-alive connection, but not one that sends a request's head slowly
(a byte every few seconds keeps it open for ever, and a few hundred such connections hold every
file descriptor). `HeadTimeoutH11` closes a connection whose request line and headers have not
all arrived within `HEAD_TIMEOUT_S` of its opening or of the previous answer's end.
"""
from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
"""Seconds a client has to send a request's line and headers."""
MAX_HEAD_BYTES = 16 * 1024
"""The largest request head accepted (h11's own limit, named here)."""
KEEP_ALIVE_S = 5.0
MAX_CONNECTIONS = 256
"""Connections served at once; more are answered 503 (uvicorn's `limit_concurrency`)."""


class HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is late."""

    _head_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the whole head is in: the request runs
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request's head has the same deadline

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(app):
    """uvicorn's Config for the service: `HeadTimeoutH11`, bounded heads and connections."""
    import uvicorn

    return uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, http=HeadTimeoutH11,
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, timeout_keep_alive=KEEP_ALIVE_S,
                          limit_concurrency=MAX_CONNECTIONS)
