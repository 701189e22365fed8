"""Serving the API safely under uvicorn: bounded request bodies, read deadlines, a connection limit.

Implements :class:`BodyLimit` (an ASGI middleware: 413 above ``max_bytes``, with or without a
Content-Length), :class:`GuardedH11Protocol` (uvicorn's h11 protocol with deadlines for a
request's headers and body, 408 past them, and at the connection limit the oldest connection not
running a request closed for a new one) and :func:`server_options` (``uvicorn.run`` keyword
arguments that serve with it), and their defaults.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64
KEEP_ALIVE_S = 5


# ---------------------------------------------------------------------------------------------
# Request size bound (a pure ASGI middleware: it sees the body before FastAPI parses it)
# ---------------------------------------------------------------------------------------------


class BodyLimit:
    """Answer 413 to a request whose body exceeds ``max_bytes`` (declared by Content-Length or
    streamed in chunks); smaller bodies are buffered and handed on unchanged."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _reject(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = f"request body larger than {self.max_bytes:,} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                return await self._reject(send, 400, "invalid Content-Length")
            if n > self.max_bytes:
                return await self._reject(send, 413, too_big)
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return await self._reject(send, 413, too_big)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


# ---------------------------------------------------------------------------------------------
# Slow clients (a protocol-level guard: ASGI code only runs once a request's headers are in)
# ---------------------------------------------------------------------------------------------


def _timeout_reply(detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the read deadlines uvicorn lacks (its keep-alive timer stops at
    a request's first byte, so a client trickling its headers or body holds the connection for
    ever; uvicorn issue 157): a request's headers must be in within ``header_timeout_s`` of its
    first byte (or of the connection), its body within ``body_timeout_s`` of the headers. Past
    either, a client that sent part of a request gets 408, and the connection is closed.

    And at the connection limit (uvicorn's ``limit_concurrency``, which counts connections: at it
    every new request gets 503), a new connection closes the oldest one that is not running a
    request (still sending one, or idle between two), so connections held open cannot lock the
    others out. :func:`server_options` makes the subclass with the deadlines set."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets TCP_NODELAY only on sockets made with proto=IPPROTO_TCP: on a listening
            # socket handed over as socket.socket() (proto 0) each response waits out the client's
            # delayed ACK, some 40 ms
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._phase: str | None = None  # "headers" or "body" while a deadline runs
        self._since = time.monotonic()
        self._received = False  # a byte of the current request is in (only then a 408 makes sense)
        self._deadline: asyncio.TimerHandle | None = None
        self._make_room()
        self._follow(received=False, fresh=True)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow(received=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # a pipelined request may already be partly in: its headers are now on the clock
        self._follow(received=bool(self.conn.trailing_data[0]))

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self, *, received: bool, fresh: bool = False) -> None:
        state = self.conn.their_state
        if self.transport.is_closing():
            phase = None
        elif state is h11.SEND_BODY:
            phase = "body"
        elif state is h11.IDLE and (received or fresh or self._phase == "headers"):
            phase = "headers"
        else:  # a request fully in, or idle after one (uvicorn's keep-alive timer covers that)
            phase = None
        received = received or phase == "body"  # the headers are in
        if phase == self._phase:
            self._received = self._received or received
            return
        self._disarm()
        self._phase, self._since, self._received = phase, time.monotonic(), received
        if phase is not None:
            timeout = self.header_timeout_s if phase == "headers" else self.body_timeout_s
            self._deadline = self.loop.call_later(timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        timeout = self.header_timeout_s if self._phase == "headers" else self.body_timeout_s
        detail = f"request {self._phase} not received within {timeout:g} s"
        log.warning("%s: %s; connection closed", _peer(self.client), detail)
        if self._received and (self.cycle is None or self.cycle.response_complete or not self.cycle.response_started):
            self.transport.write(_timeout_reply(detail))
        self.transport.close()

    def _idle(self) -> bool:
        return not self.transport.is_closing() and (self._phase is not None or self.conn.their_state is h11.IDLE)

    def _make_room(self) -> None:
        limit = self.limit_concurrency
        if not limit:
            return
        while len(self.connections) >= limit:
            idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol) and c._idle()]
            if not idle:
                return  # every other connection runs a request: uvicorn answers this one 503
            victim = min(idle, key=lambda c: c._since)
            log.info("connection limit %d reached: closing %s (not running a request, for %.1f s)",
                     limit, _peer(victim.client), time.monotonic() - victim._since)
            victim._disarm()
            victim.connections.discard(victim)  # counted out now; uvicorn's connection_lost comes later
            victim.transport.close()


def _peer(client) -> str:
    return "%s:%d" % client if client else "client"


def server_options(*, header_timeout_s: float = HEADER_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S,
                   max_connections: int = MAX_CONNECTIONS, keep_alive_s: int = KEEP_ALIVE_S) -> dict:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that serve the API safely.

    Parameters
    ----------
    header_timeout_s : seconds a request's headers may take to arrive
    body_timeout_s : seconds its body may take after them
    max_connections : connections held at once (idle ones are closed for new ones; past it every
        connection runs a request, and a new request gets 503)
    keep_alive_s : seconds an idle connection is kept between requests

    Returns
    -------
    dict: ``http`` (a :class:`GuardedH11Protocol` subclass), ``limit_concurrency``,
    ``timeout_keep_alive``, ``ws`` ("none": the API has no websockets) and ``server_header``.
    """
    for name, v in (("header_timeout_s", header_timeout_s), ("body_timeout_s", body_timeout_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 3600:
            raise ValueError(f"{name} {v!r}: expected seconds in (0, 3600]")
    for name, v, hi in (("max_connections", max_connections, 100_000), ("keep_alive_s", keep_alive_s, 3600)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ValueError(f"{name} {v!r}: expected an integer from 1 to {hi:,}")
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,),
                    {"header_timeout_s": float(header_timeout_s), "body_timeout_s": float(body_timeout_s)})
    return {"http": protocol, "limit_concurrency": max_connections, "timeout_keep_alive": keep_alive_s,
            "ws": "none", "server_header": False}
