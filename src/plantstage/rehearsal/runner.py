"""Run a plan of steps against a run context: record each step, always clean up, judge."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from plantstage import telemetry
from plantstage.errors import (
    EXIT_GO,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_NO_GO,
    EXIT_PENDING,
    Interrupted,
    PlantstageError,
)
from plantstage.evidence.ledger import Ledger
from plantstage.rehearsal import processes
from plantstage.rehearsal.context import RunContext
from plantstage.rehearsal.steps import Step, StepFailed, default_plan
from plantstage.spec.loader import LoadedSpec
from plantstage.spec.models import Release

log = logging.getLogger("plantstage")


class Listener(Protocol):
    def step_started(self, seq: int, step: Step) -> None: ...
    def step_ended(self, seq: int, step: Step, status: str, seconds: float,
                   error: str | None) -> None: ...
    def progress(self, fraction: float) -> None: ...


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    status: str  # completed | could-not-run | interrupted
    verdict: str  # GO | NO-GO | INCONCLUSIVE | PENDING (gates pass, required signoffs missing)
    evidence: dict[str, Any]
    error: PlantstageError | Interrupted | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return EXIT_INTERRUPTED
        if self.status == "could-not-run":
            return self.error.exit_code if self.error else 2
        if self.verdict == "PENDING":
            return EXIT_PENDING
        if self.verdict == "INCONCLUSIVE":
            return EXIT_INCONCLUSIVE
        return EXIT_GO if self.verdict == "GO" else EXIT_NO_GO


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _raise_interrupted(signum, _frame):  # noqa: ANN001
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}", where="rehearsal")


#: Test hook (docs/cli.md, "Testing interrupts"): ``PLANTSTAGE_TEST_INTERRUPT=STEP[:CALLS]``
#: makes a rehearsal send itself SIGTERM inside step STEP, after CALLS Python function calls
#: on the main thread (0, the default: as the step starts; a step that returns or fails first
#: gets it as it ends). Unset, the runner behaves exactly as without it.
TEST_INTERRUPT_ENV = "PLANTSTAGE_TEST_INTERRUPT"


class _InterruptHook:
    """Sends SIGTERM to this process at a chosen moment of a chosen step (tests only)."""

    def __init__(self, value: str | None):
        self.step, self.calls, self.armed = None, 0, False
        if value:
            name, _, calls = value.partition(":")
            if not calls.strip().isdigit() and calls:
                raise PlantstageError(f"{TEST_INTERRUPT_ENV}={value!r}: CALLS is not a number",
                                      where=TEST_INTERRUPT_ENV, hint="STEP[:CALLS], e.g. "
                                      "parity:2000 (a test hook; unset it for real runs)")
            self.step, self.calls = name.strip(), int(calls or 0)

    def before(self, step: Step) -> None:
        if step.name != self.step:
            return
        self.armed = True
        if self.calls <= 0:
            self._fire()
            return
        left = [self.calls]

        def count(_frame, event, _arg):  # noqa: ANN001, ANN202
            if event in ("call", "c_call"):
                left[0] -= 1
                if left[0] <= 0:
                    self._fire()

        sys.setprofile(count)

    def after(self, step: Step) -> None:
        """The step returned before the chosen call: interrupt it as it returns."""
        if self.armed and step.name == self.step:
            self._fire()

    def end(self) -> None:
        """The step failed before the chosen call: interrupt it as it ends."""
        self._fire()

    def _fire(self) -> None:
        if self.armed:
            sys.setprofile(None)
            self.armed = False
            os.kill(os.getpid(), signal.SIGTERM)


def run_rehearsal(
    loaded: LoadedSpec, release: Release, current: Release, run_dir: Path, *,
    staging_db: str | None = None, listener: Listener | None = None,
    plan: list[Step] | None = None, keep_staging: bool = False, run_id: str | None = None,
) -> RunOutcome:
    from plantstage.gates.catalogue import validate as _validate_gates

    _validate_gates(loaded)  # a gate naming an unknown signal fails before anything runs
    hook = _InterruptHook(os.environ.get(TEST_INTERRUPT_ENV))
    run_id = run_id or new_run_id()
    plan = plan or default_plan()
    # One trace per rehearsal (docs/telemetry.md); inert unless an OTLP endpoint is set.
    tel = telemetry.start_run(run_id, spec=str(loaded.path), release=release, current=current,
                              plan=[s.name for s in plan])
    try:
        return _rehearse(loaded, release, current, run_dir, tel=tel, hook=hook, run_id=run_id,
                         plan=plan, staging_db=staging_db, listener=listener,
                         keep_staging=keep_staging)
    except BaseException as exc:
        # Whatever escapes the run (a bug, an interrupt while the evidence is written), the
        # trace is closed; after the normal path's finish this second call does nothing.
        tel.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "could-not-run",
                   "NO-GO", None, exc.one_line() if isinstance(exc, PlantstageError)
                   else f"internal error: {type(exc).__name__}")
        raise


def _rehearse(
    loaded: LoadedSpec, release: Release, current: Release, run_dir: Path, *,
    tel: telemetry.RunTelemetry, hook: _InterruptHook, run_id: str, plan: list[Step],
    staging_db: str | None, listener: Listener | None, keep_staging: bool,
) -> RunOutcome:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.yaml").write_text(loaded.text)  # the spec exactly as used
    ledger = Ledger(run_dir / "ledger.sqlite", run_id)
    ledger.start_run(str(loaded.path), release.name)
    ctx = RunContext(loaded=loaded, release=release, current=current, run_id=run_id,
                     run_dir=run_dir, ledger=ledger, staging_db_override=staging_db)
    if listener is not None:
        ctx.progress = listener.progress
    records: list[dict[str, Any]] = ctx.step_records  # the gates step judges them
    status, error = "completed", None
    started = time.time()
    old_handlers = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM,)}
    current_seq = -1
    ended: set[int] = set()
    try:
        for seq, step in enumerate(plan):
            ledger.step_planned(seq, step.name)
        for seq, step in enumerate(plan):
            current_seq = seq
            rec = {"name": step.name, "title": step.title, "status": "skipped", "seconds": 0.0,
                   "results": {}, "error": None}
            records.append(rec)
            if ctx.failed_steps and not step.after_failure:
                ledger.step_ended(seq, "skipped", 0.0, {}, f"skipped after {ctx.failed_steps[0]}")
                rec["error"] = f"skipped after {ctx.failed_steps[0]} failed"
                ended.add(seq)
                tel.step_ended(step.name, "skipped", rec["error"], seq)
                if listener:
                    listener.step_ended(seq, step, "skipped", 0.0, rec["error"])
                continue
            ledger.step_started(seq, step.name)
            tel.step_started(seq, step.name, step.title)
            if listener:
                listener.step_started(seq, step)
            t0 = time.perf_counter()
            try:
                hook.before(step)
                rec["results"] = step.run(ctx) or {}
                hook.after(step)
                rec["status"] = "passed"
            except StepFailed as exc:
                rec.update(status="failed", results=exc.results, error=exc.reason)
            except Interrupted:
                rec.update(status="interrupted", error="interrupted")
                raise
            except KeyboardInterrupt:
                rec.update(status="interrupted", error="interrupted")
                raise Interrupted("interrupted by SIGINT", where="rehearsal") from None
            except PlantstageError as exc:
                rec.update(status="failed", error=exc.one_line())
                # A setup step's error, or one that says the spec does not fit the app
                # (``stops_run``: e.g. a monitor's query on the current version): the
                # rehearsal could not run (exit 2); it is not the release's failure.
                if step.setup or getattr(exc, "stops_run", False):
                    raise
            except Exception as exc:  # a bug in plantstage: record it, never call it passed
                (run_dir / "logs").mkdir(exist_ok=True)
                (run_dir / "logs" / "plantstage-error.log").write_text(traceback.format_exc())
                rec.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
            finally:
                hook.end()
                rec["seconds"] = round(time.perf_counter() - t0, 3)
                if rec["status"] == "failed":
                    ctx.failed_steps.append(step.name)
                ledger.step_ended(seq, rec["status"] if rec["status"] != "skipped"
                                  else "interrupted", rec["seconds"], rec["results"],
                                  rec["error"])
                ended.add(seq)
                tel.step_ended(step.name, rec["status"], rec["error"])
                if listener:
                    # A step with nothing to do here (no flows, a phase the strategy cannot
                    # run) passed, and is shown as skipped with its reason, not as ✔.
                    why = rec["results"].get("skipped") \
                        if isinstance(rec["results"], dict) else None
                    shown = "skipped" if rec["status"] == "passed" and why else rec["status"]
                    listener.step_ended(seq, step, shown, rec["seconds"],
                                        rec["error"] or (str(why) if why else None))
    except KeyboardInterrupt as exc:  # Interrupted is one: SIGTERM, or Ctrl-C between steps
        status = "interrupted"
        error = exc if isinstance(exc, Interrupted) else \
            Interrupted("interrupted by SIGINT", where="rehearsal")
    except PlantstageError as exc:
        status, error = "could-not-run", exc
    finally:
        # Cleanup is not interrupted, but a signal that arrives meanwhile is not forgotten:
        # the run still ends as interrupted (never GO).
        late: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, _f: late.append(signum))
        try:
            _cleanup(ctx, keep_staging)
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
    if late and status == "completed":
        status = "interrupted"
        error = Interrupted(f"interrupted by {signal.Signals(late[0]).name} during cleanup",
                            where="rehearsal")
    for seq in range(len(plan)):
        if seq in ended:
            continue
        if seq <= current_seq:  # interrupted while the runner itself was recording the step
            if seq == len(records):
                records.append({"name": plan[seq].name, "title": plan[seq].title,
                                "seconds": 0.0, "results": {}})
            records[seq].update(status="interrupted", error="interrupted")
            ledger.step_ended(seq, "interrupted", records[seq]["seconds"],
                              records[seq]["results"], "interrupted")
            continue
        ledger.step_ended(seq, "not-run", 0.0, {}, status)
        records.append({"name": plan[seq].name, "title": plan[seq].title, "status": "not-run",
                        "seconds": 0.0, "results": {}, "error": None})
    from plantstage.evidence.bundle import judge_context, write_evidence

    # One judgement (gates, score, signoffs) for the ledger, the evidence and the exit code;
    # `plantstage gate RUN` re-judges the same recorded data the same way.
    gates_passed = any(r["name"] == "gates" and r["status"] == "passed" for r in records)
    if status == "completed" and ctx.judgement is not None and gates_passed:
        judgement = ctx.judgement  # the gates step judged every step before it, once
    else:
        judgement = judge_context(ctx, records, status=status, error=error)
    verdict = judgement.verdict if status == "completed" else "NO-GO"
    ctx.gate_results = judgement.gates
    ledger.end_run(status, verdict)
    tel.finish(status, verdict, ctx.signals, error.one_line() if error is not None else None)
    ledger.close()  # before the bundle is hashed and signed: the ledger is part of it
    evidence = write_evidence(ctx, records, status=status, started=started, error=error,
                              judgement=judgement, verdict=verdict)
    return RunOutcome(run_id, run_dir, status, verdict, evidence, error)


def _cleanup(ctx: RunContext, keep_staging: bool) -> None:
    for fn in reversed(ctx.cleanups):  # e.g. twins: stopped before the app they talk to
        try:
            fn()
        except Exception:  # noqa: BLE001 - keep cleaning up
            log.warning("cleanup %r failed", fn, exc_info=True)
    for p in (ctx.green, ctx.blue):
        if p is not None:
            p.stop()
    processes.stop_all()
    if ctx.router is not None:
        ctx.router.stop()
    if ctx.staging_db is not None and not keep_staging:
        try:
            ctx.staging_db.drop()
        except Exception:  # noqa: BLE001 - best effort; the evidence says where it was
            log.warning("could not drop staging database %s", ctx.staging_db.label)
