"""The ``plantstage serve`` verb (registered on the main app by :mod:`plantstage.cli`)."""

from __future__ import annotations

import errno
import ipaddress
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from plantstage.cli_support import console, name_param, path_param
from plantstage.errors import SpecError

#: This module's commands; plantstage.cli registers them on the main app.
app = typer.Typer()


def _port_param(value: int) -> int:
    if not 1 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a TCP port (hint: 1–65535, e.g. 8000)")
    return value


def _proxy_param(values: list[str] | None) -> list[str] | None:
    for v in values or []:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise typer.BadParameter(f"'{v[:80]}' is not an IP address or network (hint: "
                                     "e.g. 127.0.0.1 or 10.0.0.0/24)") from None
    return values


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, a host that does not resolve or a port already taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SpecError(f"cannot resolve host '{host[:80]}': {exc.strerror}", where="--host",
                        hint="e.g. 127.0.0.1") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SpecError(f"port {port} on {host} is already in use", where="--port",
                                hint="stop what listens there, or choose another --port")\
                    from None
            raise SpecError(f"cannot listen on {host}:{port}: {exc.strerror}", where="--host",
                            hint="choose an address of this machine and a port you may "
                            "use (≥ 1024 without privileges)") from None


def _allowed_hosts(host: str, given: list[str] | None) -> list[str] | None:
    """Host names to answer: the ones given; on an IPv4 loopback address only loopback names
    (against DNS rebinding); otherwise any (None)."""
    if host == "localhost" or host.startswith("127."):
        return ["127.0.0.1", "localhost", host, *(given or [])]
    return list(given) if given else None


def _stopped(_signum, _frame) -> None:  # noqa: ANN001
    raise SystemExit(0)


@app.command()
def serve(
    path: Annotated[Path, typer.Argument(
        help="Spec file or folder (its .plantstage/runs), a runs folder, or a folder of "
        "projects.", callback=path_param)] = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", callback=_port_param)] = 8000,
    identity_header: Annotated[str | None, typer.Option(
        help="Enable signing off from the page: trust this request header (set by an "
        "authenticating reverse proxy) as the user's name.", callback=name_param)] = None,
    roles_header: Annotated[str, typer.Option(
        help="Header with the user's roles, comma-separated (set by the proxy).",
        callback=name_param)] = "X-Plantstage-Roles",
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="Address or network of the proxy; identity headers from anyone else are "
        "ignored (repeatable; default 127.0.0.1 and ::1).", callback=_proxy_param)] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="Host name the pages are reached by (repeatable); bound to 127.0.0.1 the "
        "default is 127.0.0.1 and localhost only, otherwise any.")] = None,
):
    """Browse runs, trends and comparisons in a web page; read-only by default.

    Exit 0 when stopped (Ctrl-C or SIGTERM), 2 when no runs are found or the port is in use.
    """
    import uvicorn

    from plantstage.serve.app import ServeConfig, create_app
    from plantstage.serve.runs import RunStore, require_runs

    config = ServeConfig(root=path.resolve(), identity_header=identity_header,
                         roles_header=roles_header,
                         trusted_proxies=trusted_proxy or ["127.0.0.1", "::1"],
                         allowed_hosts=_allowed_hosts(host, allowed_host))
    runs = require_runs(RunStore(config.root))
    check_port(host, port)
    mode = (f"signoff enabled for identities in {identity_header} from "
            f"{', '.join(config.trusted_proxies)}" if identity_header else "read-only")
    shown = f"[{host}]" if ":" in host else host
    console.print(f"plantstage serve: {len(runs)} runs under {config.root}; {mode}; "
                  f"http://{shown}:{port}/  (Ctrl-C stops)", soft_wrap=True, highlight=False)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    # it found: this one makes that a clean exit 0, as for Ctrl-C.
    signal.signal(signal.SIGTERM, _stopped)
    # proxy_headers off: the peer address must be the real one for the trusted-proxy check.
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning",
                proxy_headers=False, server_header=False)
