from __future__ import annotations

from plantstage.errors import ProcessError
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.rehearsal.steps.provision import start_version


class Deploy(Step):
    """Blue-green: start the new version beside the old one, then switch traffic to it."""

    name = "deploy"
    title = "Deploy the new version (blue-green)"

    def run(self, ctx):
        try:
            ctx.green = start_version(ctx, ctx.release, "green")
        except ProcessError as exc:
            raise StepFailed(f"the new version did not start: {exc.one_line()}") from None
        reported = ctx.green.health.get("version")
        if reported and reported != ctx.release.version:
            raise StepFailed(f"the new version reports {reported}, "
                             f"the release is {ctx.release.version}")
        ctx.router.switch(ctx.green.port)
        return {"green": ctx.green.base_url, "version": reported,
                "old_still_running": ctx.blue.alive(), "traffic": "green"}
