from __future__ import annotations

import time

import httpx

from plantstage.errors import ProcessError
from plantstage.rehearsal.processes import probe
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.spec.smoke import health_probe


def traffic_reaches(ctx, version: str, *, attempts: int = 20) -> dict:
    """Ask the app *through the router*, as clients do, until the declared probe names
    ``version``. Returns what it answered; the version is None when the probe declares none."""
    spec = health_probe(ctx.binding("staging", ctx.app_component()).health)
    answer: dict = {}
    with httpx.Client(timeout=5.0) as client:
        for _ in range(attempts):
            try:
                answer = probe(client, ctx.router.url, spec,
                               folder=ctx.green.cwd if ctx.green else None)
            except (httpx.HTTPError, OSError) as exc:
                answer = {"healthy": False, "status": None, "version": None,
                          "why": type(exc).__name__}
            # Connections opened before the switch may still reach the old version: retry.
            if answer["healthy"] and (not spec.version_in_answer or answer["version"] == version):
                return answer
            time.sleep(0.1)
    return answer


def _status(answer: dict) -> str:
    status = answer.get("status")
    return "TCP connected" if status == "tcp" else f"HTTP {status}"


class Deploy(Step):
    """Blue-green: start the new version beside the old one; no traffic moves yet.

    The app's health probe (``health:`` on its binding) decides when it is up; when the probe
    declares where the version is, the step also checks that the new process reports the
    release's version. Traffic moves at the switch step, after the paired phase.
    """

    name = "deploy"
    title = "Deploy the new version beside the old one"

    def run(self, ctx):
        try:
            ctx.green = ctx.start_version(ctx.release, "green")
        except ProcessError as exc:
            raise StepFailed(f"the new version did not start: {exc.one_line()}") from None
        want = ctx.release.version
        reported = ctx.green.health.get("version")
        declared = health_probe(ctx.green.probe).version != "none"
        results = {"green": ctx.green.base_url, "version": reported,
                   "old_still_running": ctx.blue.alive() if ctx.blue else False,
                   "traffic": "blue (unchanged until the switch)"}
        if declared and reported != want:
            raise StepFailed(f"the new version reports {reported or 'no version'} "
                             f"({ctx.green.health.get('why') or 'as declared'}), the release "
                             f"is {want}", results)
        if not declared:
            results["version_check"] = "not declared (health.version: none)"
        return results
