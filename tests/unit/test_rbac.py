"""RBAC probes against a tiny real app (WSGI, in process), the permission diff, the spec's
``rbac:``/``audit:`` sections and the built-in gates; the audit trail on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from plantstage.security import rbac as sec
from plantstage.spec.rbac import Audit, Rbac, security_gates

MAP = {"clerk": {"stock.adjust", "stock.read"}, "viewer": {"stock.read"}}


def tiny_app(roles: dict[str, set[str]], *, audit_db: Path | None = None,
             tokens: dict[str, str] | None = None):
    """A WSGI app that authorises by the X-Role header (or a bearer token from /login) and,
    with ``audit_db``, writes an audit row per stock adjustment."""
    perms = {("GET", "/t/stock"): "stock.read", ("POST", "/t/adjust"): "stock.adjust"}

    def app(environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]

        def answer(status: str, body: dict):
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]

        if path == "/login":
            n = int(environ.get("CONTENT_LENGTH") or 0)
            who = json.loads(environ["wsgi.input"].read(n))["user"]
            return answer("200 OK", {"auth": {"token": f"tok-{who}"}})
        role = environ.get("HTTP_X_ROLE")
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth.startswith("Bearer tok-"):
            role = auth.removeprefix("Bearer tok-")
        if role is None:
            return answer("401 Unauthorized", {"error": "who are you"})
        need = perms.get((method, path))
        if need is None:
            return answer("404 Not Found", {})
        if need not in roles.get(role, set()):
            return answer("403 Forbidden", {"error": "no"})
        if need == "stock.adjust" and audit_db is not None:
            with sqlite3.connect(audit_db) as c:
                c.execute("INSERT INTO audit_log (actor, action) VALUES (?, ?)", (role, need))
        return answer("200 OK", {"ok": True})

    return app


def rbac_spec(**extra) -> Rbac:
    return Rbac.model_validate({
        "as": {"headers": {"X-Role": "{role}"}},
        "permissions": {"stock.read": [{"method": "GET", "path": "/{tenant}/stock"}],
                        "stock.adjust": [{"method": "POST", "path": "/{tenant}/adjust",
                                          "json": {"ref": "{ref}"}}]},
        **extra})


def run(spec: Rbac, app_roles, map_roles=MAP, tmp=Path(".")):
    return sec.probe(spec, map_roles, "http://app", "t", tmp,
                     transport=httpx.WSGITransport(app=tiny_app(app_roles)))


def test_an_app_that_enforces_its_map_has_no_violation():
    probes = run(rbac_spec(), MAP)
    assert len(probes) == 4 and {p.outcome for p in probes} == {"ok"}
    assert {(p.role, p.permission, p.status) for p in probes if not p.allowed} == {
        ("viewer", "stock.adjust", 403)}


def test_a_role_the_code_lets_do_more_than_its_map_is_a_violation():
    leaky = {"clerk": MAP["clerk"], "viewer": {"stock.read", "stock.adjust"}}
    bad = [p for p in run(rbac_spec(), leaky) if p.outcome == "violation"]
    assert [(p.role, p.request, p.status) for p in bad] == [("viewer", "POST /t/adjust", 200)]
    # … and one that refuses what its map allows is one too.
    strict = {"clerk": {"stock.read"}, "viewer": {"stock.read"}}
    bad = [p for p in run(rbac_spec(), strict) if p.outcome == "violation"]
    assert [(p.role, p.permission, p.detail) for p in bad] == [
        ("clerk", "stock.adjust", "allowed by the map but refused")]


def test_not_enforced_reports_served_forbidden_requests_apart():
    everyone = {"clerk": MAP["clerk"], "viewer": MAP["clerk"]}
    probes = run(rbac_spec(enforced=False), everyone)
    assert [p.outcome for p in probes if not p.allowed] == ["unenforced"]
    assert not [p for p in probes if p.outcome == "violation"]


def test_login_identity_sends_the_token_it_returns(monkeypatch):
    monkeypatch.setenv("PW_CLERK", "pw")
    spec = Rbac.model_validate({
        "as": {"login": {"path": "/login", "json": {"user": "{role}", "password": "{password}"},
                         "passwords": {"clerk": {"env": "PW_CLERK"}}, "token": "auth.token"}},
        "permissions": {"stock.adjust": [{"method": "POST", "path": "/{tenant}/adjust"}]}})
    probes = run(spec, MAP)
    assert [(p.role, p.status, p.outcome) for p in probes] == [
        ("clerk", 200, "ok"), ("viewer", 403, "ok")]


def test_a_missing_bearer_token_is_an_error_not_a_pass(monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    spec = rbac_spec(**{"as": {"tokens": {"clerk": {"env": "NO_SUCH_TOKEN"}}}})
    probes = run(spec, MAP)
    assert {p.outcome for p in probes if p.role == "clerk"} == {"error"}


def test_permission_diff_gains_losses_and_approved_gains():
    new = {"clerk": {"stock.read"}, "viewer": {"stock.read", "stock.adjust"},
           "auditor": {"stock.read"}}
    d = sec.diff(MAP, new, Rbac.model_validate({"approved": [
        {"role": "auditor", "permission": "stock.read", "reason": "new role"}]}).approved)
    assert d.gained == [("viewer", "stock.adjust")]
    assert d.lost == [("clerk", "stock.adjust")]
    assert d.approved == [("auditor", "stock.read", "new role")]


def test_role_map_from_the_release_folder_else_the_fallback(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "roles.yaml").write_text("roles: {viewer: [stock.read]}\n")
    art = tmp_path / "rel"
    art.mkdir()
    paths = ["{artifact}/roles.yaml", "cfg/roles.yaml"]
    path, roles = sec.read_map(paths, "roles", tmp_path, art)
    assert path.name == "roles.yaml" and path.parent.name == "cfg" and roles == {
        "viewer": {"stock.read"}}
    (art / "roles.yaml").write_text("app:\n  roles: {viewer: [stock.read, stock.adjust]}\n")
    path, roles = sec.read_map(paths, "app.roles", tmp_path, art)
    assert path.parent == art and roles["viewer"] == {"stock.read", "stock.adjust"}
    with pytest.raises(sec.MapUnreadable, match="no 'roles' mapping"):
        sec.read_map(paths, "roles", tmp_path, art)
    with pytest.raises(sec.MapUnreadable, match="no role map at"):
        sec.read_map(["nope.yaml"], "roles", tmp_path, art)


def test_spec_sections_and_built_in_gates():
    with pytest.raises(ValidationError, match="exactly one of 'sql' or 'log'"):
        Audit.model_validate({"expect_per": "x"})
    with pytest.raises(ValidationError):
        Rbac.model_validate({"permissions": {"p": [{"method": "FETCH", "path": "/"}]}})
    spec = SimpleNamespace(rbac=rbac_spec(), secrets=object(),
                           audit=Audit(sql="SELECT 1", expect_per="a"))
    names = [g.name for g in security_gates(spec, set())]
    assert names == ["rbac", "secrets", "audit-trail"]
    assert all(g.key for g in security_gates(spec, set()))
    # A gate of the spec that already judges the signal replaces the built-in one.
    assert [g.name for g in security_gates(spec, {"secrets.found"})] == ["rbac", "audit-trail"]


def test_audit_trail_counts_entries_against_the_privileged_actions(tmp_path):
    """A tiny real app writes an audit row per adjustment; the step compares the rows with
    the signal counting the adjustments the workload made."""
    from plantstage.rehearsal.steps.secrets import AuditTrail

    db = tmp_path / "app.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE audit_log (id INTEGER PRIMARY KEY, actor TEXT, action TEXT)")
    client = httpx.Client(transport=httpx.WSGITransport(app=tiny_app(MAP, audit_db=db)),
                          base_url="http://app")
    for _ in range(3):
        assert client.post("/t/adjust", headers={"X-Role": "clerk"}).status_code == 200
    engine = sa.create_engine(f"sqlite:///{db}")
    ctx = SimpleNamespace(
        spec=SimpleNamespace(audit=Audit(sql="SELECT COUNT(*) FROM audit_log WHERE action = "
                                         "'stock.adjust'", expect_per="flow.adjusted")),
        signals={"flow.adjusted": 3.0}, sections={},
        staging_db=SimpleNamespace(readonly_engine=lambda: engine))
    ctx.signal = lambda k, v: ctx.signals.__setitem__(k, v)
    out = AuditTrail().run(ctx)
    assert (out["entries"], out["expected"], out["missing"]) == (3.0, 3.0, 0.0)
    # Two more adjustments the app forgot to audit: two missing.
    ctx.signals["flow.adjusted"] = 5.0
    assert AuditTrail().run(ctx)["missing"] == 2.0 and ctx.signals["audit.missing"] == 2.0


def test_audit_trail_from_a_log_file(tmp_path):
    from plantstage.rehearsal.steps.secrets import count_log

    log = tmp_path / "audit.log"
    log.write_text("AUDIT adjust by clerk\nINFO other\nAUDIT adjust by clerk\n")
    assert count_log([log], r"^AUDIT adjust") == 2.0
