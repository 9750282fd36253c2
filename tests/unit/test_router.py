import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from plantstage.rehearsal.processes import free_port
from plantstage.rehearsal.router import Router


def _server(body: bytes) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_switch_moves_new_connections():
    blue, green = _server(b"blue"), _server(b"green")
    router = Router(free_port())
    router.start()
    try:
        router.switch(blue.server_address[1])
        assert httpx.get(router.url).text == "blue"
        router.switch(green.server_address[1])
        assert httpx.get(router.url).text == "green"
    finally:
        router.stop()
        blue.shutdown()
        green.shutdown()


def test_split_gives_the_second_version_its_share_of_new_connections():
    blue, green = _server(b"blue"), _server(b"green")
    router = Router(free_port())
    router.start()
    try:
        router.switch(blue.server_address[1])
        router.split(blue.server_address[1], green.server_address[1], 0.25)
        seen = []
        for _ in range(40):  # a new connection per request: each is routed on its own
            with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as c:
                seen.append(c.get(router.url).text)
        assert seen.count("green") == 10 and seen.count("blue") == 30
        assert seen[:4] == ["blue", "blue", "blue", "green"]  # spread, not bunched
        assert router.connections[("127.0.0.1", green.server_address[1])] == 10
        router.switch(green.server_address[1])  # the last step: all of them
        assert httpx.get(router.url).text == "green"
    finally:
        router.stop()
        blue.shutdown()
        green.shutdown()
