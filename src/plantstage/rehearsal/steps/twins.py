"""Start the twins the staging bindings ask for, health-check them, and check them again at
the end: a twin that failed during the run is a twin failure (named as such), never GO."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx

from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.twins import TwinError, TwinSet, plan_twins, start_twins
from plantstage.twins.faults import FaultLog


def health_check(ts: TwinSet, timeout: float = 5.0) -> dict[str, str]:
    """Probe every twin over its own protocol; returns component → what answered."""
    out: dict[str, str] = {}
    with httpx.Client(timeout=timeout) as client:
        for name, twin in ts.twins.items():
            if getattr(twin, "_starting", None) is not None:
                out[name] = "starting"
                continue
            ok, why = twin.healthy()
            if not ok:
                raise TwinError(f"twin is not healthy: {why}", where=twin.where,
                                hint="see the twin's settings")
            eps = twin.endpoints()
            if "http" in eps:
                r = client.get(eps["http"] + "/health")
                if r.status_code != 200:
                    raise TwinError(f"health check answered HTTP {r.status_code}",
                                    where=eps["http"], hint="see the twin's settings")
                out[name] = f"HTTP 200 at {eps['http']}"
            elif "opcua" in eps or "mqtt" in eps:
                url = eps.get("opcua") or eps["mqtt"].split(" ", 1)[0]
                u = urlsplit(url)
                with socket.create_connection((u.hostname, u.port or 1883), timeout=timeout):
                    pass
                out[name] = f"TCP connect to {u.hostname}:{u.port}"
    return out


class StartTwins(Step):
    """Twins of the external systems staging cannot own, on one broker and fault timeline."""

    name = "twins"
    title = "Start twins of external systems"
    setup = True

    def run(self, ctx):
        planned = plan_twins(ctx.loaded)
        if not planned:
            return {"skipped": "no staging binding asks for a twin"}
        log = FaultLog(t0=time.time())
        # Slow starters (the OPC UA server) finish while staging is provisioned; the
        # twins-ready step waits for them.
        ts = start_twins(ctx.loaded, planned,
                         app_url=lambda: ctx.router.url if ctx.router is not None else None,
                         log=log, wait=False)
        ctx.twin_set = ts

        def stop() -> None:
            ctx.twin_set = None
            ts.stop()

        ctx.cleanups.append(stop)
        probes = health_check(ts)
        if ts.broker is not None:
            ctx.placeholders["mqtt_url"] = ts.broker.url
        # Flows reach the twins through ctx.twin_set (ctx.twin(NAME) in a flow); the app's
        # command and env through {twin:NAME}, each twin's primary endpoint.
        for name, twin in ts.twins.items():
            if twin.url:
                ctx.placeholders[f"twin:{name}"] = twin.url
        ctx.sections["twins"] = ts.section()
        ctx.signals_from({"twins.count": len(ts.twins)})
        return {"broker": ts.broker.url if ts.broker else None,
                "broker_kind": ts.broker.kind if ts.broker else None,
                "twins": {n: t.endpoints() for n, t in ts.twins.items()},
                "health": probes}


class TwinsReady(Step):
    """Every twin started and answers on its protocol; the fault timeline starts now."""

    name = "twins-ready"
    title = "Twins ready"
    setup = True

    def run(self, ctx):
        ts: TwinSet | None = ctx.twin_set
        if ts is None:
            return {"skipped": "no twins"}
        ts.wait_ready()
        probes = health_check(ts)
        # Fault windows count from here: the moment the twins are in service for the run.
        ts.log.t0 = time.time()
        ctx.sections["twins"] = ts.section()
        return {"health": probes, "timeline_starts": ts.log.t0}


class TwinsCheck(Step):
    """After the workload: every twin still healthy; the fault timeline goes to the evidence."""

    name = "twins-check"
    title = "Twins healthy through the run"
    after_failure = True

    def run(self, ctx):
        ts: TwinSet | None = ctx.twin_set
        if ts is None:
            return {"skipped": "no twins ran"}
        failures = ts.failures()
        ctx.signals_from(ts.signals())
        ctx.sections["twins"] = ts.section()
        counts = ts.log.counts()
        results = {"faults_injected": {n: dict(c) for n, c in counts.items()},
                   "state": {n: t.state() for n, t in ts.twins.items()},
                   "failures": failures}
        if failures:
            names = "; ".join(f"{n}: {why}" for n, why in failures.items())
            raise StepFailed(f"twin failure (not the app): {names}", results)
        return results
