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

from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.rehearsal.steps.deploy import _status, recreating, traffic_reaches
from plantstage.spec.smoke import health_probe


class Switch(Step):
    """Point the router at the new version, stop the old one (consumers included), and check
    that traffic through the router reaches the release's version."""

    name = "switch"
    title = "Switch traffic to the new version; stop the old one"

    def run(self, ctx):
        if ctx.green is None or not ctx.green.alive():
            raise StepFailed("the new version is not running: nothing to switch to")
        t0 = time.perf_counter()
        ctx.router.switch(ctx.green.port)
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
