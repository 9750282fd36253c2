"""The workload's HTTP client: aiohttp underneath, an httpx-like surface for flows.

Why not httpx (which the rest of plantstage uses): the load engine must not be the bottleneck
it measures, and on one core aiohttp's client makes several times the requests per second of
httpx's async client (see docs/workload.md). Flows keep the familiar ``await client.post(path,
json=...)`` → ``r.status_code`` / ``r.json()`` shape, so a flow written against httpx runs here.
"""

from __future__ import annotations

import json as _json
from typing import Any

import aiohttp


class Response:
    """A fully read response (the body is read before the connection is released)."""

    __slots__ = ("status_code", "content", "headers")

    def __init__(self, status_code: int, content: bytes, headers: Any):
        self.status_code = status_code
        self.content = content
        self.headers = headers

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class HttpClient:
    """Keep-alive connection pool to one base URL."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, connections: int = 100):
        self.base_url = base_url.rstrip("/")
        # No per-host limit below the engine's own: the engine's concurrency limit decides how
        # many iterations run, the pool must never queue them invisibly.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections,
                                           ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=timeout),
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "plantstage-workload"},
        )

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        url = path if "://" in path else self.base_url + path
        async with self._session.request(method, url, json=json, params=params,
                                         headers=headers) as r:
            return Response(r.status, await r.read(), r.headers)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Response:
        return await self.request("PUT", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)

    async def aclose(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
