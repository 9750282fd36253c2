"""The workload's lean HTTP/1.1 client against real sockets: framing, keep-alive, failures."""

import asyncio
import json

import pytest
from aiohttp import web

from plantstage.workload.engine import error_kind
from plantstage.workload.http import HttpClient, ServerDisconnected


async def _app_server():
    """An aiohttp server (chunked and Content-Length answers) counting its connections."""
    peers: set = set()

    async def echo(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername"))
        body = await request.read()
        return web.json_response({"method": request.method, "path": request.path,
                                  "query": dict(request.query), "body": body.decode(),
                                  "ctype": request.headers.get("Content-Type"),
                                  "x": request.headers.get("X-Test")})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"X-Kind": "chunked"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"parts": ', b"[1, 2, ", b"3]}"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}", peers


async def _raw_server(answer: bytes, close: bool):
    """A socket server that answers every request with ``answer`` bytes (and maybe closes)."""

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if close:
            writer.close()
        else:
            await reader.read()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


def test_requests_bodies_params_headers_and_keep_alive():
    async def main():
        runner, url, peers = await _app_server()
        try:
            async with HttpClient(url + "/", connections=4) as c:
                r = await c.post("/echo", json={"a": [1, "ü"]}, params={"q": "x y"},
                                 headers={"X-Test": "1"})
                assert r.status_code == 200
                body = r.json()
                assert body["method"] == "POST" and body["query"] == {"q": "x y"}
                assert json.loads(body["body"]) == {"a": [1, "ü"]}
                assert body["ctype"] == "application/json" and body["x"] == "1"
                assert r.headers["content-type"].startswith("application/json")
                r = await c.get("/echo?a=1", params={"b": 2})
                assert r.json()["query"] == {"a": "1", "b": "2"}
                r = await c.put("/echo", content=b"raw")
                assert r.json()["body"] == "raw"
                r = await c.delete("/echo")
                assert r.json()["method"] == "DELETE"
                r = await c.get(url + "/chunked")  # an absolute URL, chunked body
                assert r.json() == {"parts": [1, 2, 3]}
                assert r.headers["X-Kind"] == "chunked"
                # Ten sequential requests reuse one keep-alive connection.
                peers.clear()
                for _ in range(10):
                    assert (await c.get("/echo")).status_code == 200
                assert len(peers) == 1
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_pool_limit_queues_requests_instead_of_opening_more_connections():
    async def main():
        runner, url, peers = await _app_server()
        try:
            async with HttpClient(url, connections=2) as c:
                rs = await asyncio.gather(*(c.get("/echo", params={"i": i}) for i in range(20)))
                assert [r.json()["query"]["i"] for r in rs] == [str(i) for i in range(20)]
                assert len(peers) <= 2
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_timeout_drops_the_connection_and_the_next_request_works():
    async def main():
        runner, url, _ = await _app_server()
        try:
            async with HttpClient(url, timeout=0.1, connections=1) as c:
                with pytest.raises(TimeoutError) as exc:
                    await c.get("/slow")
                assert error_kind(exc.value) == "timeout"
                c.timeout = 5
                assert (await c.get("/echo")).status_code == 200
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_body_delimited_by_connection_close():
    async def main():
        srv, url = await _raw_server(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello", True)
        try:
            async with HttpClient(url) as c:
                r = await c.get("/")
                assert (r.status_code, r.text) == (200, "hello")
                assert (await c.get("/")).text == "hello"  # a fresh connection, not the closed one
        finally:
            srv.close()

    asyncio.run(main())


def test_server_disconnect_and_refused_connections_are_counted_by_kind():
    async def main():
        srv, url = await _raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", True)
        try:
            async with HttpClient(url) as c:
                with pytest.raises(ServerDisconnected) as exc:
                    await c.get("/")
                assert error_kind(exc.value) == "disconnected"
        finally:
            srv.close()
            await srv.wait_closed()
        async with HttpClient(url) as c:  # nothing listens there any more
            with pytest.raises(ConnectionRefusedError) as exc2:
                await c.get("/")
            assert error_kind(exc2.value) == "connection_refused"

    asyncio.run(main())


def test_garbage_answer_is_a_protocol_error():
    async def main():
        srv, url = await _raw_server(b"SSH-2.0-OpenSSH\r\n\r\n", False)
        try:
            async with HttpClient(url) as c:
                with pytest.raises(ConnectionError) as exc:
                    await c.get("/")
                assert error_kind(exc.value) == "bad_http_response"
        finally:
            srv.close()

    asyncio.run(main())
