"""The ``plantstage serve`` web app (Starlette): runs, a run, trends, two runs side by side,
pending signoffs — read-only unless an identity provider is configured.

Trust model (docs/serve.md): the app never authenticates anyone itself. With
``identity_header`` set, a reverse proxy that authenticates users passes who they are (and their
roles) in headers; the app believes those headers only on connections whose peer address is one
of ``trusted_proxies``. Only then does a signoff route exist that writes anything, and it calls
the same :func:`plantstage.evidence.verbs.signoff` as the CLI (bundle verification, the spec's
roles, re-judgement, the signed log). Without it every state-changing route answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from plantstage.errors import PlantstageError
from plantstage.evidence import bundle
from plantstage.serve.chart import trend_svg
from plantstage.serve.runs import (
    Run,
    RunStore,
    compare_signals,
    default_signal,
    signal_names,
    unit_of,
)

#: The pages' policy: nothing but this server's own stylesheet; forms post only here.
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
#: The report's own policy (its <meta> says the same), sent as a header too.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
#: Largest signoff form accepted (bytes).
MAX_FORM = 16 * 1024
STATIC = Path(__file__).parent / "static"


@dataclass
class Identity:
    """Who the authenticating proxy says is calling, and the roles it says they hold."""

    name: str
    roles: list[str] = field(default_factory=list)


@dataclass
class ServeConfig:
    root: Path
    identity_header: str | None = None
    roles_header: str = "X-Plantstage-Roles"
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    #: Host header values answered (None: any). Bound to loopback, the CLI allows only
    #: loopback names, so a web page on another site cannot read the runs by DNS rebinding.
    allowed_hosts: list[str] | None = None

    @property
    def signoff_enabled(self) -> bool:
        return bool(self.identity_header)


def _networks(addresses: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(a, strict=False) for a in addresses]


def _fmt_value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def _fmt_rel(v: float | None) -> str:
    return "" if v is None else f"{v * 100:+.1f} %"


def _fmt_time(t: float | None) -> str:
    if not t:
        return "—"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def create_app(config: ServeConfig) -> Starlette:
    """The app over the runs under ``config.root``."""
    store = RunStore(config.root)
    proxies = _networks(config.trusted_proxies) if config.signoff_enabled else []
    secret = secrets.token_bytes(32)  # signs the signoff forms' tokens (CSRF); per process
    env = Environment(loader=PackageLoader("plantstage.serve", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(value=_fmt_value, rel=_fmt_rel, time=_fmt_time)
    env.globals.update(signoff_enabled=config.signoff_enabled)

    def page(name: str, status: int = 200, **data: Any) -> HTMLResponse:
        html = env.get_template(name).render(**data)
        return HTMLResponse(html, status_code=status,
                            headers={**HEADERS, "Content-Security-Policy": PAGE_CSP})

    def identity(request: Request) -> Identity | None:
        if not config.identity_header:
            return None
        peer = request.client.host if request.client else None
        try:
            addr = ipaddress.ip_address(peer) if peer else None
        except ValueError:
            addr = None
        if addr is None or not any(addr in net for net in proxies):
            return None  # the header means nothing from anyone but the proxy
        name = (request.headers.get(config.identity_header) or "").strip()
        if not name:
            return None
        roles = [r.strip() for r in (request.headers.get(config.roles_header) or "").split(",")
                 if r.strip()]
        return Identity(name=name[:200], roles=roles)

    def token(who: Identity, key: str) -> str:
        return hmac.new(secret, f"{who.name}\0{key}".encode(), hashlib.sha256).hexdigest()

    def not_found(what: str) -> HTMLResponse:
        return page("error.html", 404, title="Not found", message=what,
                    hint="go back to the list of runs")

    def by_spec(runs: list[Run]) -> dict[str, dict[str, list[Run]]]:
        out: dict[str, dict[str, list[Run]]] = {}
        for r in runs:  # newest first already
            out.setdefault(r.spec, {}).setdefault(r.release, []).append(r)
        return out

    async def index(request: Request) -> Response:
        runs = store.runs()
        return page("index.html", title="Runs", runs=runs, groups=by_spec(runs),
                    root=str(config.root))

    async def run_page(request: Request) -> Response:
        run = store.get(request.path_params["key"])
        if run is None:
            return not_found(f"no run '{request.path_params['key'][:80]}'")
        who = identity(request)
        return page("run.html", title=f"Run {run.key}", run=run, who=who,
                    token=token(who, run.key) if who else None,
                    signals=sorted(run.signals.items()))

    async def report(request: Request) -> Response:
        run = store.get(request.path_params["key"])
        if run is None or not run.has_report:
            return not_found("this run has no report")
        return FileResponse(run.path / bundle.REPORT, media_type="text/html; charset=utf-8",
                            headers={**HEADERS, "Content-Security-Policy": REPORT_CSP})

    async def trends(request: Request) -> Response:
        runs = store.runs()
        specs = sorted({r.spec for r in runs})
        newest = next((r.spec for r in runs if r.evidence), specs[0] if specs else "")
        spec = request.query_params.get("spec") or newest
        mine = [r for r in runs if r.spec == spec]
        release = request.query_params.get("release") or ""
        if release:
            mine = [r for r in mine if r.release == release]
        groups, names = signal_names(mine)
        signal = request.query_params.get("signal") or default_signal(mine) or ""
        chrono = list(reversed(mine))  # oldest first
        points = [{"label": datetime.fromtimestamp(r.started_at, UTC).strftime("%m-%d %H:%M"),
                   "value": r.signals.get(signal), "verdict": r.verdict, "key": r.key}
                  for r in chrono]
        known = signal in names
        svg = Markup(trend_svg(signal, unit_of(signal), points)) if known else None
        last_go = next((r for r in mine if r.verdict == "GO" and signal in r.signals), None)
        return page("trends.html", title="Trends", specs=specs, spec=spec, release=release,
                    releases=sorted({r.release for r in runs if r.spec == spec}),
                    groups=groups, names=names, signal=signal,
                    featured={n for _, items in groups for n in items}, known=known, svg=svg,
                    unit=unit_of(signal), rows=list(reversed(points)), last_go=last_go)

    async def compare(request: Request) -> Response:
        runs = store.runs()
        a_key = request.query_params.get("a") or (runs[1].key if len(runs) > 1 else "")
        b_key = request.query_params.get("b") or (runs[0].key if runs else "")
        a, b = store.get(a_key), store.get(b_key)
        only = request.query_params.get("all") != "1"
        rows = compare_signals(a, b) if a and b else []
        q = (request.query_params.get("q") or "").strip()
        if q:
            rows = [r for r in rows if q.lower() in r["name"].lower()]
        changed = sum(1 for r in rows if r["changed"])
        gates = []
        if a and b:
            ga = {g["name"]: g for g in (a.evidence or {}).get("gates") or []}
            gb = {g["name"]: g for g in (b.evidence or {}).get("gates") or []}
            for name in list(ga) + [n for n in gb if n not in ga]:
                x, y = ga.get(name), gb.get(name)
                gates.append({"name": name, "a": x, "b": y,
                              "changed": (x or {}).get("outcome") != (y or {}).get("outcome")})
        return page("compare.html", title="Compare", runs=runs, a=a, b=b, a_key=a_key,
                    b_key=b_key, rows=[r for r in rows if r["changed"]] if only else rows,
                    changed=changed, total=len(rows), only=only, gates=gates, q=q)

    async def signoffs(request: Request) -> Response:
        runs = [r for r in store.runs() if r.pending_roles()]
        who = identity(request)
        return page("signoffs.html", title="Pending signoffs", runs=runs, who=who,
                    tokens={r.key: token(who, r.key) for r in runs} if who else {},
                    identity_header=config.identity_header)

    async def signoff(request: Request) -> Response:
        if not config.signoff_enabled:
            return page("error.html", 403, title="Read-only",
                        message="this server is read-only: signing off here needs an identity "
                        "provider", hint="use `plantstage signoff RUN --role … --by …`, or start "
                        "the server behind an authenticating proxy with --identity-header "
                        "(docs/serve.md)")
        who = identity(request)
        if who is None:
            return page("error.html", 403, title="Not signed in",
                        message=f"no identity: the {config.identity_header} header is missing, "
                        "or the request did not come through a trusted proxy",
                        hint="sign in through the proxy in front of this server")
        key = request.path_params["key"]
        run = store.get(key)
        if run is None:
            return not_found(f"no run '{key[:80]}'")
        body = await request.body()
        if len(body) > MAX_FORM:
            return page("error.html", 413, title="Too large", message="the form is too large",
                        hint="a reason of a few lines is enough")
        # A urlencoded form parsed by the standard library: Starlette's form parser needs the
        # python-multipart package, a dependency for one small form.
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(str(form.get("token", "")).encode(),
                                   token(who, key).encode()):
            return page("error.html", 403, title="Stale form",
                        message="the form's token does not match (a stale page, or a form "
                        "posted from another site)", hint="reload the run's page and try again")
        role = form.get("role", "")
        if role not in who.roles:
            return page("error.html", 403, title="Not your role",
                        message=f"{who.name} does not hold role '{role[:80]}' (roles from "
                        f"{config.roles_header}: {', '.join(who.roles) or 'none'})",
                        hint="ask for the role in the identity provider")
        from plantstage.evidence.verbs import signoff as _signoff

        try:
            _signoff(run.path, role=role, by=who.name, decision=form.get("decision", ""),
                     reason=form.get("reason", ""))
        except PlantstageError as exc:
            return page("error.html", 400, title="Signoff refused", message=exc.one_line(),
                        hint="nothing was changed")
        return RedirectResponse(f"/runs/{key}", status_code=303, headers=HEADERS)

    async def css(request: Request) -> Response:
        return FileResponse(STATIC / "serve.css", media_type="text/css", headers=HEADERS)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204, headers=HEADERS)  # no icon; browsers ask anyway

    routes = [Route("/", index), Route("/favicon.ico", favicon), Route("/runs/{key}", run_page),
              Route("/runs/{key}/report", report), Route("/trends", trends),
              Route("/compare", compare), Route("/signoffs", signoffs),
              Route("/runs/{key}/signoff", signoff, methods=["POST"]),
              Route("/static/serve.css", css)]
    middleware = []
    if config.allowed_hosts:
        from starlette.middleware import Middleware
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        middleware.append(Middleware(TrustedHostMiddleware,
                                     allowed_hosts=config.allowed_hosts))
    return Starlette(routes=routes, middleware=middleware)
