from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from plantstage.errors import ProcessError
from plantstage.rehearsal.processes import probe
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.spec.models import Strategy
from plantstage.spec.smoke import HealthProbe, health_probe

#: Seconds between two probes of the downtime prober: the downtime's resolution.
PROBE_INTERVAL = 0.05


def recreating(ctx) -> bool:
    """The release is rehearsed stop-the-world (``strategy: recreate``)."""
    return ctx.release.strategy == Strategy.recreate


class DowntimeProber:
    """Downtime as a client sees it: a thread asks the app's declared health probe *through the
    router* every :data:`PROBE_INTERVAL` seconds, from just before the old version stops until
    the new one answers.

    The downtime is the time from the last healthy answer before the outage (or the moment the
    old version was told to stop, if it never answered) to the first healthy answer after it;
    with a version in the probe's answer, only an answer naming the release's version ends it.
    Its resolution is the probe interval plus one probe's round trip.
    """

    def __init__(self, url: str, spec: HealthProbe, want: str, *, interval: float = PROBE_INTERVAL):
        if not spec.version_in_answer:  # a version file names no process: health only
            spec = spec.model_copy(update={"version": "none"})
        self.url, self.spec, self.want, self.interval = url, spec, want, interval
        self.t0 = time.monotonic()
        self.stopped_at: float | None = None  # the old version was told to stop
        self.routed_at: float | None = None  # the router was pointed at the new version
        self.last_ok: float | None = None  # last healthy answer before the outage
        self.back_at: float | None = None  # first healthy answer of the new version
        self.probes = 0
        self.failed = 0
        self.last_why = ""
        self._back = threading.Event()
        self._probed = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="plantstage-downtime-prober")

    def start(self) -> DowntimeProber:
        self._thread.start()
        return self

    def old_stopping(self) -> None:
        self.stopped_at = time.monotonic()

    def routed_to_new(self) -> None:
        """The router now points at the new version. Without a version in the probe's answer
        only answers from then on can be the new version's: until then a healthy answer is the
        old version, still answering while it shuts down."""
        self.routed_at = time.monotonic()

    def _answers_new(self, answer: dict[str, Any], t: float) -> bool:
        if not answer.get("healthy"):
            return False
        if self.spec.version_in_answer:
            return answer.get("version") == self.want
        return self.routed_at is not None and t >= self.routed_at

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._halt.is_set():
                t = time.monotonic()
                try:
                    answer = probe(client, self.url, self.spec)
                except (httpx.HTTPError, OSError) as exc:
                    answer = {"healthy": False, "why": type(exc).__name__}
                self.probes += 1
                self._probed.set()
                if self.stopped_at is None or t < self.stopped_at:
                    if answer.get("healthy"):
                        self.last_ok = t  # the old version, still serving
                elif self._answers_new(answer, t):
                    self.back_at = t
                    self._back.set()
                    return
                elif answer.get("healthy"):
                    self.last_ok = t  # the old version, still answering while it stops
                else:
                    self.failed += 1
                    self.last_why = str(answer.get("why") or f"HTTP {answer.get('status')}")
                self._halt.wait(self.interval)

    def wait_first(self, timeout: float) -> bool:
        """Wait until the prober has asked once (so the old version's last answer is known)."""
        return self._probed.wait(timeout)

    def wait_back(self, timeout: float) -> bool:
        """Wait until the new version answered through the router (False on a timeout)."""
        return self._back.wait(timeout)

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(5)

    @property
    def down_from(self) -> float | None:
        if self.stopped_at is None:
            return None
        return self.last_ok if self.last_ok is not None else self.stopped_at

    @property
    def downtime(self) -> float | None:
        """Seconds clients could not reach the app (None while it is not back)."""
        start = self.down_from
        if start is None or self.back_at is None:
            return None
        return max(0.0, self.back_at - start)

    def describe(self) -> dict[str, Any]:
        return {"downtime_seconds": None if self.downtime is None else round(self.downtime, 3),
                "probes": self.probes, "failed_probes": self.failed,
                "probe_interval": self.interval, "last_failure": self.last_why or None,
                "old_stopped_after": None if self.stopped_at is None
                else round(self.stopped_at - self.t0, 3),
                "back_after": None if self.back_at is None else round(self.back_at - self.t0, 3)}


def stop_old_version(ctx) -> dict[str, Any]:
    """Recreate: start the downtime prober, then stop the old version entirely (its HTTP
    server and its message consumers with it). The prober runs until the switch step sees the
    new version answer through the router."""
    spec = health_probe(ctx.binding("staging", ctx.app_component()).health)
    prober = DowntimeProber(ctx.router.url, spec, ctx.release.version).start()
    ctx.downtime_prober = prober
    ctx.cleanups.append(prober.stop)
    prober.wait_first(5.0)  # a first answer from the old version, if it answers
    was_running = ctx.blue is not None and ctx.blue.alive()
    prober.old_stopping()
    if ctx.blue is not None:
        ctx.blue.stop()
    return {"strategy": "recreate", "old_was_running": was_running,
            "old_stopped": bool(ctx.blue is None or not ctx.blue.alive()),
            "downtime_probe": f"{ctx.router.url} ({_probe_text(spec)}) every "
                              f"{prober.interval:g} s"}


def _probe_text(spec: HealthProbe) -> str:
    return "TCP connect" if spec.tcp else f"{spec.method} {spec.path}"


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
    title = "Deploy the new version"

    def run(self, ctx):
        if recreating(ctx) and ctx.blue is not None and ctx.blue.alive():
            raise StepFailed("strategy recreate: the old version is still running (the migrate "
                             "step stops it before the upgrade)")
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
        if recreating(ctx):
            results.update(strategy="recreate",
                           traffic="none: the old version is stopped (recreate); the switch "
                                   "points the router at the new one")
        if declared and reported != want:
            raise StepFailed(f"the new version reports {reported or 'no version'} "
                             f"({ctx.green.health.get('why') or 'as declared'}), the release "
                             f"is {want}", results)
        if not declared:
            results["version_check"] = "not declared (health.version: none)"
        return results
