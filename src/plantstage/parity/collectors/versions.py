"""Versions: each service's running version and artifact, each database's engine and migration.

A service's running version is *observed* from its health endpoint when the environment binds
it to a URL (production's running app); a staging service that the rehearsal has not started
yet is *declared* — the release staging will run first (the spec's ``current``). An endpoint
that does not answer makes that version ``unknown`` with the reason, never ``same``.

A database's migration head is read the way the spec declares it (``parity.schema_version``:
a query, or a command of the app's migration tool — any tool); a database without one has no
head in the report, and a declared one that fails is ``unknown``.

An observed MQTT broker (``parity.broker``) adds its version as ``$SYS/broker/version`` gives
it (Mosquitto does; a broker without ``$SYS`` leaves it ``unknown``).
"""

from __future__ import annotations

import os
import subprocess

import httpx
import sqlalchemy as sa

from plantstage import artifacts, engines
from plantstage.errors import PlantstageError
from plantstage.parity._broker import VERSION_TOPIC, broker_component, broker_config, observe_env
from plantstage.parity._environment import EnvView, Unresolved
from plantstage.parity._model import LayerFacts
from plantstage.spec.models import ComponentKind
from plantstage.spec.parity import SchemaVersion


def collect(view: EnvView) -> LayerFacts:
    out = LayerFacts("versions")
    spec = view.spec
    app = view.app_component()
    current = view.current_release()
    for name in spec.components_of(ComponentKind.service):
        b = view.binding(name)
        if b is None:
            continue
        if b.url:
            _observe(view, out, name, b.url, b.health)
        elif name == app:
            out.add(f"{name}.version", current.version, name,
                    f"declared: staging starts release {current.name}")
        else:
            out.fail(f"{name}.version", name, f"{view.name} binds {name} without a url to ask")
        if name == app:
            _artifact(view, out, name, current)
    heads = {sv.component: sv for sv in spec.parity.schema_version}
    for name in spec.components_of(ComponentKind.database):
        if view.binding(name) is None:
            continue
        if name not in heads and view.name == "production":
            out.notes.append(f"{name}: no parity.schema_version entry, so its migration head "
                             f"is not compared")
        url, how = view.database_url(name)
        if url is None:
            out.fail(f"{name}.", name, how)
            continue
        try:
            engine = engines.connect_production(url)
        except PlantstageError as exc:
            out.fail(f"{name}.", name, exc.one_line())
            continue
        try:
            with engine.connect() as conn:
                d = conn.dialect
                info = ".".join(str(p) for p in (d.server_version_info or ()))
                out.add(f"{name}.engine", f"{d.name} {info}".strip(), name, how)
                if name in heads and heads[name].sql is not None:
                    _head_by_sql(out, name, conn, heads[name])
        except Exception as exc:  # noqa: BLE001 - driver errors become one reason
            out.fail(f"{name}.", name, f"cannot read {engines.adapter_for(url).label}: "
                                       f"{str(exc).splitlines()[0][:160]}")
        finally:
            engine.dispose()
        if name in heads and heads[name].command is not None:
            _head_by_command(view, out, name, url, heads[name])
    _broker_version(view, out)
    return out


def _broker_version(view: EnvView, out: LayerFacts) -> None:
    cfg = broker_config(view)
    if cfg is None or not cfg.sys:
        return
    comp = broker_component(view, cfg)
    # A broker component is named by its own name; otherwise the broker is not a component.
    is_broker = comp in view.spec.components_of(ComponentKind.broker)
    key = f"{comp if is_broker else 'mqtt-broker'}.version"
    obs = observe_env(view, cfg)
    if obs.error:
        out.fail(key, comp, obs.error)
    elif obs.version is None:
        out.fail(key, comp, f"{obs.url} published no {VERSION_TOPIC} during {obs.window:g} s")
    else:
        out.add(key, obs.version, comp, f"observed: {obs.url} {VERSION_TOPIC}")


def _observe(view: EnvView, out: LayerFacts, name: str, url: str, health) -> None:
    """Ask the running app which version it is, the way its binding's health probe says."""
    from plantstage.spec.smoke import health_probe

    probe = health_probe(health)
    try:
        base = view.expand(url)
    except Unresolved as exc:
        out.fail(f"{name}.version", name, f"its url needs {exc}")
        return
    if not probe.version_in_answer:
        if probe.kind != "http":
            why = f"its health probe is a {probe.kind} probe: the running version cannot be " \
                  "asked over the network"
        elif probe.version != "none":
            why = "its health probe reads the version from the release, not from the running app"
        else:
            why = "its health probe does not say where the running version is named " \
                  "(declare health.version: {json: …} | {header: …} | {regex: …})"
        out.fail(f"{name}.version", name, why)
        return
    target = base.rstrip("/") + probe.path
    if view.name == "production" and not _read_only_request(probe):
        out.fail(f"{name}.version", name,
                 f"not asked: production is read-only, and its health probe sends "
                 f"{probe.method} {probe.path} (only GET, HEAD, OPTIONS or a JSON-RPC POST are "
                 f"sent to production)")
        return
    try:
        r = httpx.request(probe.method, target, json=probe.json_body,
                          headers=probe.headers or None,
                          timeout=view.spec.parity.health_timeout)
    except httpx.HTTPError as exc:
        out.fail(f"{name}.version", name,
                 f"{target} unreachable: {type(exc).__name__}: {str(exc)[:120]}")
        return
    healthy, version, why = probe.judge(r.status_code, r.headers, r.text)
    if not healthy:
        out.fail(f"{name}.version", name, f"{probe.method} {target} answered {why}")
        return
    if not version:
        out.fail(f"{name}.version", name, f"{target}: {why}")
        return
    out.add(f"{name}.version", str(version), name, f"observed: {probe.method} {target}")


def _read_only_request(probe) -> bool:
    """Whether the probe's request may go to production: a method that reads by definition, or
    a POST carrying a JSON-RPC request (a JSON-RPC status call is a POST by protocol)."""
    return probe.method in ("GET", "HEAD", "OPTIONS") or \
        probe.method == "POST" and probe.is_jsonrpc


def _artifact(view: EnvView, out: LayerFacts, name: str, release) -> None:
    if view.name == "production":
        # Production's artifact is what the spec approved for it; plantstage cannot read
        # production's disk, and the running version above is the observed check.
        out.add(f"{name}.artifact", release.artifact.sha256, name,
                f"declared: releases.{release.name}.artifact.sha256")
        return
    path = view.artifact_dir(release)
    try:
        out.add(f"{name}.artifact", artifacts.digest(path), name, f"digest of {path}")
    except PlantstageError as exc:
        out.fail(f"{name}.artifact", name, exc.one_line())


def _head_by_sql(out: LayerFacts, name: str, conn: sa.Connection, sv: SchemaVersion) -> None:
    """The first column of every row the query returns, sorted, joined with commas."""
    key = f"{name}.migration_head"
    try:  # the last statement on this connection: a failure here aborts nothing else
        rows = conn.execute(sa.text(sv.sql)).fetchall()
    except Exception as exc:  # noqa: BLE001 - a missing table is a reason, not a crash
        out.fail(key, name, f"parity.schema_version query failed: "
                            f"{str(exc).splitlines()[0][:160]}")
        return
    values = sorted(str(r[0]) for r in rows if len(r) and r[0] is not None)
    out.add(key, ",".join(values) or "empty", name, f"parity.schema_version: {sv.sql}")


def _head_by_command(view: EnvView, out: LayerFacts, name: str, url: str,
                     sv: SchemaVersion) -> None:
    """The last line the migration tool prints. It runs in the folder of the release whose
    migrations built this database (the current release, in both environments)."""
    key = f"{name}.migration_head"
    art = view.artifact_dir(view.current_release())
    try:
        cmd = [view.expand(a, db=url, artifact=str(art)) for a in sv.command or []]
    except Unresolved as exc:
        out.fail(key, name, f"parity.schema_version command needs {exc}")
        return
    try:
        proc = subprocess.run(cmd, cwd=art if art.is_dir() else view.spec_dir,
                              env={**os.environ, "DATABASE_URL": url,
                                   "PYTHONDONTWRITEBYTECODE": "1"},
                              capture_output=True, text=True, timeout=sv.timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        out.fail(key, name, f"parity.schema_version command {cmd[0]!r} did not run: "
                            f"{str(exc)[:160]}")
        return
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        out.fail(key, name, f"parity.schema_version command exited {proc.returncode}: {err}")
        return
    out.add(key, lines[-1], name, f"parity.schema_version: {' '.join(sv.command or [])}")
