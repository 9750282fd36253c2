"""The rollback drill: roll the release back the way production would (``rollback.kind``:
downgrade, restore, code-only, feature-flag), and recover — after a restore, replay what
production received since the backup — then check that every acknowledged business effect is
back exactly once, reconcile, and time it all on one clock against the recovery objectives
(docs/recovery.md).

The evidence's ``rollback-drill`` results carry ``kind``, ``timeline`` (events with ``start``
= seconds since the backup was taken, and ``seconds``) and ``objectives`` (the contract the
report renders).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from plantstage import engines
from plantstage.errors import PlantstageError, SpecError
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.rehearsal.steps.migrate import run_release_steps
from plantstage.rehearsal.steps.provision import start_version
from plantstage.spec.recovery import (
    RPO_SIGNAL,
    RTO_SIGNAL,
    FlagProviderKind,
    Recovery,
    RollbackKind,
    objective_for,
    recovered_components,
)

Snapshot = dict[str, dict[str, Any]]


def account(before: Snapshot, after: Snapshot, old_columns: dict[str, list[str]], *,
            reference: Snapshot | None = None, on: str = "downgrade") -> dict[str, Any]:
    """What the rollback lost of the data that existed before the release, counted apart:
    rows gone, values wiped in rows that stayed, and columns gone (dropped or renamed).

    ``before`` and ``after`` are :func:`plantstage.engines.column_snapshot` results taken just
    before and just after the rollback, over the pre-release columns present at the time;
    ``old_columns`` are the tables and columns before the release. A column the release
    renamed or dropped is absent from ``before``; when the rollback brings it back, its values
    are held against ``reference`` (the backup's snapshot): fewer values than at the backup
    are values the rollback did not restore. ``on`` names the rollback in the messages.
    """
    reference = reference or {}
    rows_lost = values_lost = columns_lost = 0
    problems: list[dict[str, Any]] = []
    changed: set[str] = set()

    def problem(table: str, kind: str, count: int, message: str, column: str | None = None):
        problems.append({"table": table, "column": column, "kind": kind, "count": count,
                         "message": message})
        changed.add(table)

    for table, cols in old_columns.items():
        a = after.get(table)
        # A table the release dropped or renamed and the rollback brought back: held against
        # the backup, every column as one the rollback restored.
        restored = table not in before
        b = reference.get(table) if restored else before[table]
        if a is None:
            n = b["rows"] if b else 0
            rows_lost += n
            columns_lost += len(cols)
            problem(table, "table", n, f"table {table} missing after {on} ({n:,} rows)")
            continue
        if b is None:
            continue
        gone = max(0, b["rows"] - a["rows"])
        if gone:
            rows_lost += gone
            problem(table, "rows", gone, f"{table}: {gone:,} rows lost on {on} "
                                         f"({b['rows']:,} → {a['rows']:,} rows)")
        for col in cols:
            if col not in a["columns"]:
                columns_lost += 1
                why = "" if col in before.get(table, {}).get("columns", ()) else \
                    " (the release renamed or dropped it)"
                problem(table, "column", 1, f"column {table}.{col} missing after {on}{why}", col)
                continue
            fa = a["by_column"][col]
            if restored or col not in b["columns"]:
                # Renamed or dropped by the release, back after the rollback: its values must be.
                ref = (reference.get(table) or {}).get("by_column", {}).get(col)
                n = max(0, ref["values"] - fa["values"]) if ref else 0
                if n:
                    values_lost += n
                    problem(table, "values", n,
                            f"{table}.{col}: {n:,} values not restored by the {on}", col)
                continue
            # Values that left with lost rows are counted as rows, not again as values.
            n = max(0, engines.values_missing(b["by_column"][col], fa) - gone)
            if n:
                values_lost += n
                problem(table, "values", n, f"{table}.{col}: {n:,} values wiped on {on}", col)
        same_cols = list(a["columns"]) == list(b["columns"])
        if (not restored and same_cols and a["digest"] != b["digest"] and table not in changed
                and a["rows"] == b["rows"]):
            # Every column holds the same values, yet the rows differ: values moved between rows.
            problem(table, "rows", 0, f"{table}: rows changed on {on} (each column's values "
                                      "kept, but not in the same rows)")
    return {"rows_lost": rows_lost, "values_lost": values_lost, "columns_lost": columns_lost,
            "tables_changed": len(changed), "problems": problems}


class Timeline:
    """Events of one recovery on one clock (wall time), as seconds since the backup."""

    def __init__(self, origin: float):
        self.origin = origin
        self.events: list[dict[str, Any]] = []

    def add(self, event: str, start: float, seconds: float | None = None) -> None:
        self.events.append({"event": event, "start": round(start - self.origin, 3),
                            "seconds": None if seconds is None else round(seconds, 3)})

    @contextlib.contextmanager
    def timed(self, event: str):
        t = time.time()
        try:
            yield
        finally:
            self.add(event, t, time.time() - t)


def _backup_times(ctx) -> tuple[float, float | None]:
    """(started, seconds) of the backup on the run's clock: the ledger's backup step, else the
    backup file's time."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{ctx.ledger.path}?mode=ro",
                                                uri=True)) as db:
            row = db.execute("SELECT started_at, ended_at FROM steps WHERE run_id = ? AND "
                             "name = 'backup'", (ctx.run_id,)).fetchone()
        if row and row[0] is not None:
            return float(row[0]), (row[1] - row[0]) if row[1] is not None else None
    except (sqlite3.Error, AttributeError, TypeError):
        pass
    return Path(ctx.backup_path).stat().st_mtime, None


def mark_staging(ctx, status: str) -> None:
    """Set staging's completion marker (the refresh's ``plantstage_refresh`` table, made when
    missing): ``incomplete`` while a recovery changes it, ``complete`` once it is recovered and
    reconciled. An interrupted drill leaves it ``incomplete``."""
    from plantstage.data._marker import MARKER, marker_table, now

    eng = ctx.staging_db.engine()
    try:
        table = marker_table()
        with eng.begin() as c:
            if MARKER not in sa.inspect(c).get_table_names():
                table.create(c)
            done = now() if status == "complete" else None
            n = c.execute(table.update().where(table.c.id == 1).values(
                status=status, finished_at=done)).rowcount
            if not n:
                c.execute(table.insert().values(id=1, status=status, source="rollback drill",
                                                started_at=now(), finished_at=done))
    finally:
        eng.dispose()


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        data = data.setdefault(p, {})
        if not isinstance(data, dict):
            raise SpecError(f"recovery.flag.key: '{p}' is not a mapping in the flag file",
                            where="recovery.flag.key", hint="name the flag's dotted path")
    data[last] = value


def flip_flag(ctx, flag) -> dict[str, Any]:
    """Turn the feature flag off where the app reads it; return what was changed and the
    environment to start the app with (``env``). A file must lie in the run's folder
    ({run_dir}): the drill never edits the project's own files."""
    if flag.provider == FlagProviderKind.env:
        return {"provider": "env", "variable": flag.variable, "value": str(flag.off),
                "env": {flag.variable: str(flag.off)}}
    path = Path(ctx.expand(flag.file))
    if not path.is_absolute():
        path = ctx.spec_dir / path
    if ctx.run_dir.resolve() not in path.resolve().parents:
        raise SpecError(f"the flag file {path} is outside the run's folder",
                        where="recovery.flag.file",
                        hint="let the app read it from {run_dir}/… (the drill writes there)")
    text = path.read_text() if path.exists() else ""
    yaml_file = path.suffix in (".yaml", ".yml")
    try:
        if yaml_file:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text) if text.strip() else {}
    except Exception as exc:  # noqa: BLE001 - json's ValueError and yaml's YAMLError alike
        data = exc
    if not isinstance(data, dict):
        why = f"{type(data).__name__}: {data}" if isinstance(data, Exception) \
            else f"it holds a {type(data).__name__}, not a mapping"
        why = " ".join(str(why).split())[:120]  # one line, whatever the parser said
        raise SpecError(f"the flag file {path} cannot be read as flags ({why})",
                        where="recovery.flag.file",
                        hint="a JSON or YAML mapping (flagd: {\"flags\": {…}})")
    if flag.provider == FlagProviderKind.flagd:
        # flagd's file format: {"flags": {NAME: {"state", "variants", "defaultVariant"}}}.
        f = data.setdefault("flags", {}).setdefault(flag.flag, {"state": "ENABLED"})
        variants = f.setdefault("variants", {})
        variants.setdefault(str(flag.off), False)
        f["defaultVariant"] = str(flag.off)
        f.pop("targeting", None)  # targeting rules could still turn it on for some
        changed = f"flags.{flag.flag}.defaultVariant"
    else:
        changed = flag.key or flag.flag
        _set_dotted(data, changed, flag.off)
    path.parent.mkdir(parents=True, exist_ok=True)
    if yaml_file:
        import yaml

        path.write_text(yaml.safe_dump(data, sort_keys=False))
    else:
        path.write_text(json.dumps(data, indent=2))
    return {"provider": flag.provider.value, "file": str(path), "key": changed,
            "value": flag.off, "env": {}}


class RollbackDrill(Step):
    """Roll back as production would (the release's ``rollback.kind``; default: downgrade
    when the release is reversible, restore from the backup when not), recover what a restore
    loses by replaying it, check every acknowledged effect is back exactly once, reconcile —
    timed from the failure on one clock against the recovery objectives. The data is compared
    before and after: rows, each column's values, and the columns themselves."""

    name = "rollback-drill"
    title = "Rollback drill"
    after_failure = True

    def run(self, ctx):
        if ctx.staging_db is None:
            return {"skipped": "nothing was changed yet"}
        if ctx.backup_snapshot is None:
            # The backup step keeps a backup only once it verified: without one the release
            # never ran (every step after the backup was skipped), and nothing is restored.
            why = ("the backup did not verify" if "backup" in ctx.failed_steps
                   else "no backup was taken")
            return {"skipped": f"no verified backup ({why}); the release did not touch "
                               "staging, so there is nothing to roll back"}
        kind = ctx.release.rollback_kind()
        backup_at, step_s = _backup_times(ctx)
        # The backup itself (its step may also verify it: that is not part of taking it).
        backup_s = ctx.signals.get("backup.seconds", step_s)
        tl = Timeline(backup_at)
        tl.add("backup taken", backup_at, backup_s)
        # The rehearsed failure is declared as the drill starts (a failed step before it is
        # named in the results); the decision is the release's declared rollback kind.
        t_fail = time.time()
        tl.add("failure", t_fail)
        mark_staging(ctx, "incomplete")
        tl.add("decision", t_fail, time.time() - t_fail)
        results: dict[str, Any] = {"kind": kind.value, "method": kind.value}
        if ctx.failed_steps:
            results["failure_step"] = ctx.failed_steps[0]
        problems: list[str] = []
        extra: dict[str, float] = {}
        try:
            if kind == RollbackKind.downgrade:
                loss = self._downgrade(ctx, tl, results)
            elif kind == RollbackKind.restore:
                loss = self._restore(ctx, tl, results, backup_at, extra)
            elif kind == RollbackKind.code_only:
                loss = self._code_only(ctx, tl, results)
            else:
                loss = self._feature_flag(ctx, tl, results)
        except StepFailed as exc:  # the rollback itself failed: staging stays incomplete
            exc.results = {**results, **exc.results, "timeline": tl.events}
            raise
        serving = next((e for e in tl.events if e["event"] == "serving"), None)
        results["seconds"] = round(time.time() - t_fail, 2)
        extra["recovery.serving_seconds"] = serving["start"] + tl.origin - t_fail \
            if serving else results["seconds"]
        effects, reconcile_error = self._reconcile(ctx, tl, results)
        if isinstance(results.get("replay"), dict) and "calls" in results["replay"]:
            extra.update(self._replay_outcome(ctx, results))
        reconciled = tl.events[-1]
        rto = reconciled["start"] + (reconciled["seconds"] or 0) + tl.origin - t_fail
        objective = objective_for(ctx.spec, recovered_components(ctx.spec))
        lost_ids = effects.get("lost_ids", [])
        results["timeline"] = tl.events
        results["objectives"] = {
            "rto_seconds": objective.rto, "rto_measured": round(rto, 3),
            "rpo_target": objective.rpo,
            "rpo_lost": effects.get("lost"), "lost_ids": lost_ids}
        signals = {"rollback.seconds": results["seconds"], RTO_SIGNAL: rto, **extra}
        if effects.get("lost") is not None:
            signals[RPO_SIGNAL] = effects["lost"]
            signals["recovery.duplicated"] = effects["duplicated"]
        self._finish(ctx, loss, results, kind.value, signals)
        if loss["problems"]:
            problems.append(f"data lost on {kind.value}: "
                            + "; ".join(p["message"] for p in loss["problems"]))
        # Without a declared RPO none may be lost; within a declared one, the ids are still
        # listed in the evidence.
        rpo = objective.rpo if objective.rpo is not None else 0
        if effects.get("lost") and effects["lost"] > rpo:
            shown = ", ".join(lost_ids[:10]) + (" …" if len(lost_ids) > 10 else "")
            problems.append(f"{effects['lost']} acknowledged business effect(s) lost after "
                            f"the {kind.value} (RPO {rpo}): {shown}")
        if effects.get("duplicated"):
            problems.append(f"{effects['duplicated']} acknowledged business effect(s) present "
                            f"more than once after the {kind.value}")
        if objective.rto is not None and rto > objective.rto:
            problems.append(f"recovery took {rto:.1f} s, over the RTO of {objective.rto:g} s")
        if reconcile_error:
            problems.append(reconcile_error)
        if problems:
            raise StepFailed("; ".join(problems), results)
        mark_staging(ctx, "complete")
        return results

    # -- kinds ---------------------------------------------------------------------------------
    def _snapshot(self, ctx):
        eng = ctx.staging_db.engine()
        try:
            present = engines.table_columns(eng)
            cols = {t: [c for c in cs if c in present.get(t, [])]
                    for t, cs in ctx.old_columns.items() if t in present}
            return engines.column_snapshot(eng, cols)
        finally:
            eng.dispose()

    def _finish(self, ctx, loss: dict[str, Any], results: dict[str, Any], on: str,
                extra: dict[str, float] | None = None) -> None:
        ctx.signals_from({"rollback.rows_lost": loss["rows_lost"],
                          "rollback.values_lost": loss["values_lost"],
                          "rollback.columns_lost": loss["columns_lost"],
                          "rollback.tables_changed": loss["tables_changed"], **(extra or {})})
        results.update({k: loss[k] for k in ("rows_lost", "values_lost", "columns_lost")},
                       problems=loss["problems"])

    def _old_version_back(self, ctx, tl: Timeline) -> None:
        """Traffic back to the old version (started if the switch stopped it), the new one
        stopped; 'serving' once the old one answers its health probe."""
        t = time.time()
        if ctx.blue is None or not ctx.blue.alive():
            ctx.blue = start_version(ctx, ctx.current, "blue")
        ctx.router.switch(ctx.blue.port)
        if ctx.green is not None:
            ctx.green.stop()
        tl.add("switch", t, time.time() - t)

    def _serving(self, ctx, tl: Timeline, proc) -> None:
        b = ctx.binding("staging", ctx.app_component())
        proc.wait_healthy(b.startup_timeout)
        tl.add("serving", time.time())

    def _downgrade(self, ctx, tl: Timeline, results: dict[str, Any]) -> dict[str, Any]:
        # Traffic goes back to the old version first; it runs on the expanded schema. The
        # switch stopped it (consumers included), so it starts again as production would.
        self._old_version_back(ctx, tl)
        before = self._snapshot(ctx)
        with tl.timed("downgrade"):
            run_release_steps(ctx, ctx.release, "rollback")
        after = self._snapshot(ctx)
        self._serving(ctx, tl, ctx.blue)
        results["rows_compared"] = sum(s["rows"] for s in before.values())
        # Tables the release added are expected to go; data that existed before must stay.
        return account(before, after, ctx.old_columns, reference=ctx.backup_snapshot)

    def _code_only(self, ctx, tl: Timeline, results: dict[str, Any]) -> dict[str, Any]:
        # The old code on the expanded schema, no downgrade: the schema and data stay as the
        # release left them, and the old version must serve on them.
        before = self._snapshot(ctx)
        self._old_version_back(ctx, tl)
        self._serving(ctx, tl, ctx.blue)
        after = self._snapshot(ctx)
        results["rows_compared"] = sum(s["rows"] for s in before.values())
        return account(before, after, ctx.old_columns, on="code-only rollback")

    def _feature_flag(self, ctx, tl: Timeline, results: dict[str, Any]) -> dict[str, Any]:
        # The new version stays, with its feature turned off where the app reads the flag.
        flag = ctx.spec.recovery.flag
        before = self._snapshot(ctx)
        with tl.timed("flag off"):
            flipped = flip_flag(ctx, flag)
        env = flipped.pop("env")
        results["flag"] = {"name": flag.flag, **flipped}
        if flag.restart or ctx.green is None or not ctx.green.alive():
            t = time.time()
            if ctx.green is not None:
                ctx.green.stop()
            ctx.green = ctx.start_version(ctx.release, "green", env=env, log_name="green-flag")
            ctx.router.switch(ctx.green.port)
            tl.add("restart", t, time.time() - t)
        self._serving(ctx, tl, ctx.green)
        results["serving_version"] = (ctx.green.health or {}).get("version")
        after = self._snapshot(ctx)
        results["rows_compared"] = sum(s["rows"] for s in before.values())
        return account(before, after, ctx.old_columns, on="feature-flag rollback")

    def _restore(self, ctx, tl: Timeline, results: dict[str, Any], backup_at: float,
                 extra: dict[str, float]) -> dict[str, Any]:
        t = time.time()
        for p in (ctx.green, ctx.blue):
            if p is not None:
                p.stop()
        tl.add("stop", t, time.time() - t)
        # The fingerprints are the rehearsal's own checks (production would not take them);
        # they are timed apart and still counted in the RTO, so it errs long, never short.
        with tl.timed("fingerprint"):
            before = self._snapshot(ctx)
        self._before_restore = before  # held against the data after the replay
        with tl.timed("restore"):
            run_release_steps(ctx, ctx.release, "rollback", ("before",))
            try:
                ctx.staging_db.restore(ctx.backup_path)
            except PlantstageError as exc:  # its message says what is left of staging
                raise StepFailed(f"the restore failed: {exc.one_line()}", results) from None
            mark_staging(ctx, "incomplete")  # the backup's marker said complete
            run_release_steps(ctx, ctx.release, "rollback", ("after",))
        with tl.timed("fingerprint"):
            after = self._snapshot(ctx)  # the backup's data, before anything is replayed
        t = time.time()
        ctx.blue = start_version(ctx, ctx.current, "blue")
        ctx.router.switch(ctx.blue.port)
        tl.add("start", t, time.time() - t)
        tl.add("serving", time.time())
        loss = account(ctx.backup_snapshot, after, ctx.old_columns, on="restore")
        since_backup = sum(max(0, before[t]["rows"] - ctx.backup_snapshot[t]["rows"])
                           for t in before if t in ctx.backup_snapshot)
        results["rows_written_since_backup"] = since_backup
        extra["rollback.rows_written_since_backup"] = since_backup
        rec = ctx.spec.recovery
        if rec is not None and not rec.replay:
            results["replay"] = {"skipped": "recovery.replay is false"}
            return loss
        with tl.timed("replay"):
            results["replay"] = self._replay(ctx, backup_at,
                                             time.time() + (rec or Recovery()).consumer_start)
        extra["recovery.replayed_messages"] = results["replay"]["messages"]["sent"]
        extra["recovery.replayed_calls"] = results["replay"]["calls"]["sent"]
        return loss

    # -- replay and reconciliation -----------------------------------------------------------
    def _replay_outcome(self, ctx, results: dict[str, Any]) -> dict[str, float]:
        """What the replay could not bring back, as signals a gate can name: messages and calls
        the app refused or that could not be sent, whether the recording was incomplete, and
        rows per table still fewer than just before the restore (data written since the backup
        that the replay did not re-create — beyond the declared effects RPO counts)."""
        rp = results["replay"]
        calls, msgs = rp.get("calls", {}), rp.get("messages", {})
        incomplete = bool(rp.get("unreplayable_messages")) or any(
            "incomplete" in n or "no broker" in n or "no HTTP calls" in n
            for n in (*calls.get("notes", []), *msgs.get("notes", [])))
        out = {"recovery.replay_refused": float(calls.get("refused", 0) + msgs.get("refused", 0)),
               "recovery.replay_failed": float(calls.get("failed", 0) + msgs.get("failed", 0)),
               "recovery.replay_incomplete": 1.0 if incomplete else 0.0}
        before = getattr(self, "_before_restore", None)
        if before:
            now = self._snapshot(ctx)
            missing = {t: before[t]["rows"] - now.get(t, {}).get("rows", 0) for t in before}
            missing = {t: n for t, n in missing.items() if n > 0}
            rp["rows_missing_after_replay"] = missing
            out["recovery.rows_missing_after_replay"] = float(sum(missing.values()))
        return out

    def _replay(self, ctx, since: float, consumers_ready: float) -> dict[str, Any]:
        """Send again what the app received since the backup: the messages the twins
        published to it (their recorded deliveries) and the HTTP calls it acknowledged."""
        from plantstage.twins.replay import replay_calls, republish

        ts = ctx.twin_set
        twins = getattr(ts, "twins", None) or {}
        messages: list[tuple[float, str, bytes, int]] = []
        unreplayable = 0
        for twin in twins.values():
            outcomes = getattr(twin, "outcomes", None)
            if outcomes is None:
                continue
            for d in outcomes():
                if getattr(d, "at", 0.0) + d.seconds < since or not d.deliveries:
                    continue  # answered before the backup was taken: the backup holds it
                if not d.payload or not d.topic:
                    unreplayable += 1  # encoded per delivery (Sparkplug): nothing kept
                    continue
                messages.append((d.at, d.topic, d.payload, int(getattr(twin, "qos", 1))))
        messages.sort(key=lambda m: m[0])
        traffic = getattr(ts, "traffic", None)
        calls = [c for c in traffic.since(since) if 200 <= c.status < 300] \
            if traffic is not None else []
        out: dict[str, Any] = {"since_backup": {"messages": len(messages),
                                                "calls": len(calls)}}
        broker = getattr(getattr(ts, "broker", None), "url", None)
        # Calls first, then messages, each in the order production got them: an HTTP call
        # may create what a later confirmation books against.
        out["calls"] = replay_calls(ctx.router.url, calls).as_dict()
        if messages and broker:
            time.sleep(max(0.0, consumers_ready - time.time()))
            out["messages"] = republish(broker, [m[1:] for m in messages]).as_dict()
        else:
            out["messages"] = {"sent": 0, "refused": 0, "failed": len(messages),
                               "seconds": 0.0, "notes": [] if not messages else
                               ["no broker to replay into"]}
        if unreplayable:
            out["unreplayable_messages"] = unreplayable
        if traffic is None:
            out["calls"]["notes"].append("no HTTP calls recorded (no twins in this run)")
        elif not traffic.complete_since(since):
            out["calls"]["notes"].append("the recording dropped calls since the backup "
                                         "(over its limit): the replay is incomplete")
        return out

    def _reconcile(self, ctx, tl: Timeline, results: dict[str, Any]
                   ) -> tuple[dict[str, Any], str | None]:
        """The exactly-once effect checks and the after-recovery reconciliation, timed as
        'reconciled'."""
        from plantstage.rehearsal.steps.effects import recheck
        from plantstage.rehearsal.steps.reconcile import run_point

        rec = ctx.spec.recovery or Recovery()
        replayed = isinstance(results.get("replay"), dict) and "calls" in results["replay"]
        settle = rec.settle if replayed else None
        error = None
        with tl.timed("reconciled"):
            effects = recheck(ctx, settle)
            try:
                results["reconcile"] = run_point(ctx, "after-recovery")
            except StepFailed as exc:
                results["reconcile"] = exc.results.get("reconcile", {})
                error = exc.reason
            ctx.results["reconcile@after-recovery"] = {"results": results["reconcile"],
                                                       "error": error}
        results["effects"] = effects
        return effects, error
