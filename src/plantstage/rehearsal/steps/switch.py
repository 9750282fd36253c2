"""The switch: all traffic to the new version, and the old one stopped entirely.

Stopping the old process (not only moving the router) matters for message consumers: as long as
the old version is subscribed, a broker shares the messages between old and new, and the new
consumer never meets the whole stream alone. After this step the candidate phase exercises the
new version alone, as production will run it.

Under ``strategy: recreate`` the old version was already stopped by the migrate step; the switch
points the router at the new one and ends the downtime measurement: the prober that has been
asking the router since the old version stopped sees the new version answer
(``deploy.downtime_seconds``; docs/strategies.md).
"""

from __future__ import annotations

import time

import httpx

from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.rehearsal.steps.deploy import _status, recreating, traffic_reaches
from plantstage.spec.models import Strategy
from plantstage.spec.smoke import HealthProbe, health_probe


class Switch(Step):
    """Point the router at the new version, stop the old one (consumers included), and check
    that traffic through the router reaches the release's version."""

    name = "switch"
    title = "Switch traffic to the new version; stop the old one"

    def run(self, ctx):
        if ctx.green is None or not ctx.green.alive():
            raise StepFailed("the new version is not running: nothing to switch to")
        canary = _canary(ctx) if ctx.release.strategy == Strategy.canary else None
        t0 = time.perf_counter()
        ctx.router.switch(ctx.green.port)
        if getattr(ctx, "downtime_prober", None) is not None:
            ctx.downtime_prober.routed_to_new()
        old_was_running = ctx.blue is not None and ctx.blue.alive()
        if ctx.blue is not None:
            ctx.blue.stop()  # its HTTP server and its message consumers with it
        seconds = time.perf_counter() - t0
        want = ctx.release.version
        seen = traffic_reaches(ctx, want)
        results = {"traffic": "green", "router_target": ctx.green.base_url,
                   "old_stopped": bool(ctx.blue is None or not ctx.blue.alive()),
                   "old_was_running": old_was_running, "seconds": round(seconds, 2),
                   "through_router": f"{_status(seen)}, version "
                                     f"{seen.get('version') or seen.get('why') or '—'}"}
        ctx.signals_from({"switch.seconds": seconds})
        if canary is not None:
            results["canary"] = canary
        if recreating(ctx):
            results.update(_downtime(ctx))
        if not seen.get("healthy"):
            raise StepFailed(f"traffic does not reach {want}: the router answered "
                             f"{results['through_router']}", results)
        if health_probe(ctx.green.probe).version_in_answer and seen.get("version") != want:
            raise StepFailed(f"traffic does not reach {want}: {results['through_router']}",
                             results)
        return results


#: Seconds the switch waits for the prober to see the new version through the router.
BACK_TIMEOUT = 30.0


def _downtime(ctx) -> dict:
    """End the recreate downtime measurement: the first answer of the new version through
    the router; signals ``deploy.downtime_seconds`` and the window it is judged against."""
    prober = getattr(ctx, "downtime_prober", None)
    if prober is None:
        raise StepFailed("strategy recreate: no downtime was measured (the migrate step did not "
                         "stop the old version)")
    back = prober.wait_back(BACK_TIMEOUT)
    prober.stop()
    out = {"downtime": prober.describe()}
    window = ctx.release.maintenance_window
    if window is not None:
        out["maintenance_window"] = window
    if not back:
        raise StepFailed(f"strategy recreate: the new version did not answer through the "
                         f"router within {BACK_TIMEOUT:g} s of the switch (last probe: "
                         f"{prober.last_why or 'unhealthy'})", out)
    values = {"deploy.downtime_seconds": prober.downtime,
              "deploy.downtime_failed_probes": prober.failed}
    if window is not None:
        values["deploy.maintenance_window_seconds"] = window
    ctx.signals_from(values)
    return out


#: The canary's steps when the release names none: a tenth, then half of new connections.
DEFAULT_CANARY = (0.1, 0.5)
CANARY_PROBE_INTERVAL = 0.05


def _canary_step(url: str, spec: HealthProbe, hold: float, old: str, new: str) -> dict:
    """Probe the router for ``hold`` seconds, one new connection per probe (each is routed on
    its own), and count who answered: the old version, the new one, or nobody."""
    from plantstage.rehearsal.processes import probe

    counts = {"probes": 0, "old": 0, "new": 0, "answered": 0, "failed": 0}
    why = ""
    deadline = time.monotonic() + hold
    with httpx.Client(timeout=2.0, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while time.monotonic() < deadline:
            try:
                answer = probe(client, url, spec)
            except (httpx.HTTPError, OSError) as exc:
                answer = {"healthy": False, "why": type(exc).__name__}
            counts["probes"] += 1
            if not answer.get("healthy"):
                counts["failed"] += 1
                why = str(answer.get("why") or f"HTTP {answer.get('status')}")
            elif spec.version_in_answer and answer.get("version") in (old, new) and old != new:
                counts["new" if answer["version"] == new else "old"] += 1
            else:
                counts["answered"] += 1
            time.sleep(CANARY_PROBE_INTERVAL)
    if why:
        counts["last_failure"] = why
    return counts


def _canary(ctx) -> list[dict]:
    """Canary: before all traffic moves, the router gives the new version a growing share of
    new connections (``canary_steps``), each held ``canary_hold`` seconds while the declared
    health probe asks through the router; a probe nobody answers fails the switch (both
    versions must serve while traffic is shared)."""
    if ctx.blue is None or not ctx.blue.alive():
        raise StepFailed("strategy canary: the old version is not running, so there is no "
                         "traffic to share")
    spec = health_probe(ctx.binding("staging", ctx.app_component()).health)
    if not spec.version_in_answer:
        spec = spec.model_copy(update={"version": "none"})
    rel = ctx.release
    out = []
    values: dict[str, float] = {}
    for i, share in enumerate(rel.canary_steps or DEFAULT_CANARY, 1):
        before = dict(ctx.router.connections)
        ctx.router.split(ctx.blue.port, ctx.green.port, share)
        counts = _canary_step(ctx.router.url, spec, rel.canary_hold, ctx.current.version,
                              rel.version)
        routed = {k: v - before.get(k, 0) for k, v in ctx.router.connections.items()}
        to_new = routed.get(("127.0.0.1", ctx.green.port), 0)
        total = sum(routed.values())
        rec = {"step": i, "share": share, "hold": rel.canary_hold, **counts,
               "routed_to_new": to_new, "routed": total}
        seen = counts["old"] + counts["new"]
        if seen:
            rec["new_share_answered"] = round(counts["new"] / seen, 3)
            values[f"deploy.canary.step{i}.new_share"] = counts["new"] / seen
        values[f"deploy.canary.step{i}.failed_probes"] = counts["failed"]
        out.append(rec)
    values["deploy.canary.failed_probes"] = sum(r["failed"] for r in out)
    ctx.signals_from(values)
    bad = [r for r in out if r["failed"]]
    if bad:
        r = bad[0]
        raise StepFailed(f"strategy canary: with {r['share']:.0%} of new connections on "
                         f"{rel.version}, {r['failed']} of {r['probes']} probes through the "
                         f"router got no healthy answer ({r.get('last_failure', 'unhealthy')})",
                         {"canary": out})
    return out
