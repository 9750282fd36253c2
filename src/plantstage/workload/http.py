"""The workload's HTTP client: a lean HTTP/1.1 keep-alive pool, with an httpx-like surface.

Why hand-written, and not httpx (which the rest of plantstage uses) or aiohttp's client session:
the load engine must not be the bottleneck it measures. Profiling the engine against a trivial
endpoint showed aiohttp's ``ClientSession`` spending ~55% of the generator's CPU per request on
machinery a load generator does not need (cookie jar, tracing hooks, auto headers, redirect and
proxy handling, per-request timer objects, stream readers); httpx's async client costs several
times more. This client does only what a plain-HTTP workload needs: a keep-alive connection
pool per host, one ``transport.write`` per request, responses parsed by httptools (the C llhttp
parser uvicorn uses: status, headers, Content-Length and chunked bodies), a total timeout per
request. ``https://`` URLs go through aiohttp (TLS is not worth re-doing here).

Flows keep the familiar ``await client.post(path, json=...)`` → ``r.status_code`` / ``r.json()``
/ ``r.text`` / ``r.headers`` shape, so a flow written against httpx runs here.
"""

from __future__ import annotations

import asyncio
import json as _json
import time
from collections import deque
from typing import Any
from urllib.parse import urlencode, urlsplit

import httptools
from multidict import CIMultiDict

from plantstage.telemetry import TRACEPARENT

#: A pooled connection idle longer than this is closed rather than reused: servers drop idle
#: keep-alive connections (uvicorn after 5 s), and a request written into a connection the
#: server is closing fails although the app never saw it.
IDLE_SECONDS = 2.0


class ServerDisconnected(ConnectionError):
    """The server closed the connection before the response was complete."""


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 this client can read."""


class Response:
    """A fully read response (the body is read before the connection is reused)."""

    __slots__ = ("status_code", "content", "_raw_headers", "_headers")

    def __init__(self, status_code: int, content: bytes, headers: Any):
        self.status_code = status_code
        self.content = content
        self._raw_headers = headers
        self._headers = None

    @property
    def headers(self) -> CIMultiDict:
        """Case-insensitive response headers (built on first use: most flows never look)."""
        if self._headers is None:
            raw = self._raw_headers
            self._headers = raw if isinstance(raw, CIMultiDict) else CIMultiDict(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in raw or ())
        return self._headers

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it carries one request at a time."""

    __slots__ = ("transport", "parser", "waiter", "headers", "body", "status", "closed",
                 "keep_alive", "headers_done", "framed", "idle_since")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.status = 0
        self.closed = False
        self.keep_alive = True
        self.headers_done = False
        self.framed = False  # Content-Length or chunked: the body's end is known
        self.idle_since = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"bad HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and self.headers_done and not self.framed:
            self.on_message_complete()  # a body delimited by the end of the connection
        else:
            self._fail(ServerDisconnected("the server closed the connection"))

    # -- httptools callbacks ------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        for k, v in self.headers:
            lk = k.lower()
            if lk == b"content-length" or (lk == b"transfer-encoding" and b"chunked" in v):
                self.framed = True
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.framed = True  # no body by definition

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        w = self.waiter
        if w is None or w.done():
            return
        self.waiter = None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        w.set_result(Response(self.status, body, self.headers))

    # -- use ------------------------------------------------------------------------------
    def begin(self, waiter: asyncio.Future, data: bytes) -> None:
        self.waiter = waiter
        self.headers = []
        self.body = []
        self.headers_done = self.framed = False
        self.transport.write(data)  # type: ignore[union-attr]

    def _fail(self, exc: Exception) -> None:
        w = self.waiter
        self.waiter = None
        if w is not None and not w.done():
            w.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Keep-alive connections to one host:port, at most ``limit`` open at once.

    When all are busy, requests wait for one (first come, first served) — the engine's own
    concurrency limit decides how much runs, so this only bites flows that fan out.
    """

    def __init__(self, host: str, port: int, limit: int):
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[_Connection] = []
        self.size = 0
        self.waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> _Connection:
        while True:
            now = time.monotonic()
            while self.idle:
                c = self.idle.pop()  # most recently used first: it is the least likely stale
                if not c.closed and now - c.idle_since < IDLE_SECONDS:
                    return c
                self._discard(c)
            if self.size < self.limit:
                self.size += 1
                try:
                    _t, c = await asyncio.get_running_loop().create_connection(
                        _Connection, self.host, self.port)
                except BaseException:
                    self.size -= 1
                    self._wake()
                    raise
                return c  # type: ignore[return-value]
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                c = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    self.release(fut.result())
                else:
                    try:
                        self.waiters.remove(fut)
                    except ValueError:
                        pass
                raise
            if c is not None:
                return c
            # None: a slot was freed; try again.

    def release(self, c: _Connection) -> None:
        if c.closed or not c.keep_alive:
            self._discard(c)
            return
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(c)
                return
        c.idle_since = time.monotonic()
        self.idle.append(c)

    def _discard(self, c: _Connection) -> None:
        c.close()
        self.size -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


_HEADERS = b"User-Agent: plantstage-workload\r\nAccept: */*\r\n"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class HttpClient:
    """Keep-alive connection pools (per host) rooted at one base URL."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, connections: int = 100,
                 on_exchange: Any = None):
        self.base_url = base_url.rstrip("/")
        #: Called with (method, target, headers, body, status, answer=) after each plain-HTTP
        #: answer:
        #: a rehearsal records the calls the app took, to replay them after a restore.
        self.on_exchange = on_exchange
        self.timeout = timeout
        self.connections = connections
        self._pools: dict[tuple[str, int], _Pool] = {}
        self._tls: Any = None  # aiohttp session for https://, made on first use
        self._base = self._origin(self.base_url)

    def _origin(self, url: str) -> tuple[str, _Pool | None, bytes, str]:
        """(scheme, pool, Host header line, path prefix) for an absolute URL."""
        u = urlsplit(url)
        if u.scheme == "https":
            return "https", None, b"", ""
        host, port = u.hostname or "127.0.0.1", u.port or 80
        pool = self._pools.get((host, port))
        if pool is None:
            pool = self._pools[(host, port)] = _Pool(host, port, self.connections)
        host_line = f"Host: {u.netloc}\r\n".encode("latin-1")
        return "http", pool, host_line, u.path.rstrip("/")

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None,
                      content: bytes | None = None) -> Response:
        if "://" in path:
            u = urlsplit(path)
            scheme, pool, host_line, prefix = self._origin(f"{u.scheme}://{u.netloc}")
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        else:
            scheme, pool, host_line, prefix = self._base
        if scheme == "https" or pool is None:
            return await self._tls_request(method, path if "://" in path else
                                           self.base_url + path, json=json, params=params,
                                           headers=headers, content=content)
        target = prefix + path
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params, doseq=True)
        head = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), host_line, _HEADERS]
        if headers:
            head.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        if (tp := TRACEPARENT.get()) is not None and not (headers and "traceparent" in headers):
            # a sampled flow iteration's span (docs/telemetry.md): the app's spans join it
            head.append(b"traceparent: %s\r\n" % tp.encode())
        if json is not None:
            content = _json.dumps(json).encode()
            head.append(b"Content-Type: application/json\r\n")
        if content is not None or method in _BODY_METHODS:
            content = content or b""
            head.append(b"Content-Length: %d\r\n" % len(content))
        head.append(b"\r\n")
        if content:
            head.append(content)
        data = b"".join(head)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            conn = await pool.acquire()
            fut = loop.create_future()
            try:
                conn.begin(fut, data)
                response = await fut
            except BaseException:
                # Timed out, cancelled or broken mid-request: the connection's state is
                # unknown (a late answer would be read as the next request's), so drop it.
                conn.waiter = None
                pool._discard(conn)
                raise
        pool.release(conn)
        if self.on_exchange is not None and pool is self._base[1]:  # the app's, not a twin's
            self.on_exchange(method, target, headers, content, response.status_code,
                             answer=response.content)
        return response

    async def _tls_request(self, method: str, url: str, **kw: Any) -> Response:
        import aiohttp

        if self._tls is None:
            self._tls = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                skip_auto_headers=("User-Agent",), headers={"User-Agent": "plantstage-workload"})
        content = kw.pop("content", None)
        if (tp := TRACEPARENT.get()) is not None:  # a sampled iteration's span (telemetry)
            kw["headers"] = {"traceparent": tp, **(kw.get("headers") or {})}
        async with self._tls.request(method, url, data=content, **kw) as r:
            return Response(r.status, await r.read(), CIMultiDict(r.headers))

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Response:
        return await self.request("PUT", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        if self._tls is not None:
            await self._tls.close()
            self._tls = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
