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
