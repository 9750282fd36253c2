"""The signal catalogue a spec implies, and check-time validation of gate expressions.

Signal names a rehearsal of a spec can record (documented in docs/gates.md):

* ``workload.<phase>.<flow>.<stat>`` — phase ``baseline``, ``paired.old``, ``paired.new`` (the
  paired phase's two versions) or ``candidate``; ``flow`` the label of
  a flow the spec drives (its archetypes' flows, ``workload.flows``: a registered name as
  written, or for ``module:function`` the function's name as written); any statistic, step or
  counter of the flow after it; and the phase-level ``workload.<phase>.{iterations, errors,
  error_rate, dropped, unfinished, archetypes, in_flight, seconds, errors.<kind>,
  business.<counter>, archetype.<a>.…, queue_drained, queue_drain_s, <queue>.{before,max,end}}``;
* ``reconcile.<check>.mismatches`` for each ``reconcile`` check;
* ``migrate.*`` (the upgrade's duration and its projection), ``deploy.*`` (recreate's downtime);
* ``rollback.*``, ``backup.*``, ``parity.*``, ``refresh.*``, ``twins.*`` (twins.<component>.…
  names a component bound to a twin), ``cost.<phase>.<counter>`` (cost probes);
* ``monitor.<phase>.<monitor>.<stat>`` for each business transaction monitor (``monitors:``),
  phase ``baseline``, ``paired`` or ``candidate`` (``load`` standalone), and
  ``monitor.<phase>.<monitor>.tenant.<tenant>.<stat>`` for a per-tenant one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plantstage.errors import SpecError
from plantstage.gates.cel import GATE_FUNCTIONS, CelSyntaxError, compile_expr, signal_refs
from plantstage.spec.monitors import STATS as MONITOR_STATS

PHASES = ("baseline", "paired", "candidate")
#: Phases a monitor is sampled in: the rehearsal's, and ``load`` (``plantstage load``).
MONITOR_PHASES = (*PHASES, "load")
#: The paired phase's versions: ``workload.paired.<version>.<flow>.<stat>``.
VERSIONS = ("old", "new")
#: Summaries of the queue series (plantstage.workload.queues.SUMMARY_NAMES) and their drain.
QUEUE_STATS = {"queue_depth", "broker_queued_bytes", "broker_inflight", "mes_backlog",
               "queue_drained", "queue_drain_s"}
PHASE_STATS = {"iterations", "errors", "error_rate", "dropped", "unfinished", "archetypes",
               "in_flight", "business", "archetype", "count", "rate", "seconds", "blocks",
               "block_s"} | QUEUE_STATS
#: What every flow records (``workload.<phase>.<flow>.<stat>``) and what it means.
FLOW_STATS = {
    "count": "iterations finished (failed ones included)",
    "rate": "iterations finished per second",
    "errors": "iterations that failed",
    "dropped": "iterations not started: the concurrency limit was reached",
    "p50_ms": "latency from the intended start, median (also p95_ms, p99_ms, max_ms)",
    "e2e_p95_ms": "end-to-end latency the flow recorded (ctx.record_e2e; also e2e_p50_ms …)",
    "step.<step>.p95_ms": "a timed step (ctx.step, ctx.wait_until as wait-<name>; also p50 …)",
    "throughput": "time series: iterations per second",
    "errors_per_s": "time series: errors per second",
}
OPEN_PREFIXES = ("rollback.", "backup.", "parity.", "refresh.", "steps.", "cost.", "effects.",
                 "isolation.", "rbac.", "secrets.", "audit.",
                 "tenant_config.", "deploy.", "migrate.", "recovery.")
#: CEL's standard global functions and macros (calls the parser sees as ident_arg).
_CEL_BUILTINS = {"size", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn",
                 "duration", "timestamp", "matches", "has"}


@dataclass
class Catalogue:
    flows: set[str]
    reconcile: set[str]
    twins: set[str]
    #: Business transaction monitors (``monitors:``) by name → whether it is per tenant.
    monitors: dict[str, bool] = field(default_factory=dict)

    def monitor_problem(self, parts: list[str]) -> str | None:
        """``monitor.<phase>.<monitor>.<stat>`` (``….tenant.<tenant>.<stat>`` per tenant)."""
        form = f"monitor signals are monitor.<{'|'.join(MONITOR_PHASES)}>.<monitor>.<stat>"
        if len(parts) < 4 or parts[1] not in MONITOR_PHASES:
            return form
        if parts[2] not in self.monitors:
            return (f"no monitor '{parts[2]}' in this spec's monitors (monitors: "
                    f"{', '.join(sorted(self.monitors)) or 'none'})")
        rest = parts[3:]
        if rest[0] == "tenant" and self.monitors[parts[2]] and len(rest) >= 3:
            rest = rest[-1:]  # a tenant code may hold dots
        if len(rest) == 1 and rest[0] in MONITOR_STATS:
            return None
        return f"{form}, stat one of {', '.join(MONITOR_STATS)}"

    def problem(self, name: str) -> str | None:
        """Why ``name`` cannot be a signal of this spec (None if it can)."""
        parts = name.split(".")
        if parts[0] == "monitor":
            return self.monitor_problem(parts)
        if parts[0] == "workload":
            if len(parts) < 3 or parts[1] not in PHASES:
                return f"workload signals are workload.<{'|'.join(PHASES)}>.<flow>.<stat>"
            if parts[1] == "paired" and parts[2] in VERSIONS:
                parts = parts[:1] + parts[2:]  # workload.paired.<old|new>.<flow>.<stat>
                if len(parts) < 3:
                    return "paired signals are workload.paired.<old|new>.<flow>.<stat>"
            if parts[2] in PHASE_STATS or parts[2] in self.flows:
                return None
            return (f"no flow '{parts[2]}' in this spec's workload (flows: "
                    f"{', '.join(sorted(self.flows)) or 'none'})")
        if parts[0] == "reconcile":
            if len(parts) == 3 and parts[1] in self.reconcile and parts[2] == "mismatches":
                return None
            return (f"reconcile signals are reconcile.<check>.mismatches (checks: "
                    f"{', '.join(sorted(self.reconcile)) or 'none'})")
        if parts[0] == "twins":
            if len(parts) == 2 or parts[1] in self.twins:
                return None
            return f"no twin '{parts[1]}' (twins: {', '.join(sorted(self.twins)) or 'none'})"
        if any(name.startswith(p) for p in OPEN_PREFIXES):
            return None
        return ("not a signal a rehearsal records (workload.*, reconcile.*, rollback.*, "
                "backup.*, parity.*, refresh.*, twins.*, cost.*, monitor.*)")


def catalogue(spec) -> Catalogue:
    wl = spec.workload
    flows = {f.label for f in wl.flows}
    for a in wl.archetypes.values():
        flows |= {f.label for f in a.flows}
    twins = {name for name, b in spec.environments["staging"].bindings.items()
             if b.twin is not None}
    return Catalogue(flows, {c.name for c in spec.reconcile}, twins,
                     {m.name: m.per_tenant for m in getattr(spec, "monitors", None) or []})


def signal_catalogue(loaded) -> list[tuple[str, str]]:
    """``(signal name or pattern, meaning)`` for every signal a rehearsal of this spec records.

    Flows' own counters come from what their plugin declared (``@flow(signals=…)``); a flow that
    declares none can still record any (the catalogue then says so).
    """
    from plantstage.workload.plan import flow_defs

    spec = loaded.spec
    out: list[tuple[str, str]] = []
    phase = "<phase>"
    for label, fd in sorted(flow_defs(loaded).items()):
        head = f"workload.{phase}.{label}"
        origin = f" ({fd.description})" if fd.description else ""
        out.append((f"{head}.{{count,rate,errors,dropped,p50_ms,p95_ms,p99_ms,max_ms}}",
                    f"flow {label}{origin}"))
        out.append((f"{head}.{{e2e_*,step.<step>.*,throughput,errors_per_s}}",
                    "its timings and time series"))
        for name, meaning in sorted(fd.signals.items()):
            out.append((f"{head}.{name}", meaning))
        if not fd.signals:
            out.append((f"{head}.<counter>", "counters it records (it declares none)"))
    p = f"workload.{phase}"
    out += [
        (f"{p}.{{iterations,errors,error_rate,dropped,seconds,archetypes}}", "phase totals"),
        (f"{p}.errors.<kind>", "failed iterations by kind (http_<status>, timeout_<name> …)"),
        (f"{p}.business.<counter>", "each flow counter summed over the phase's flows"),
        (f"{p}.archetype.<archetype>.<flow>.{{count,errors,dropped,rate,p95_ms,p99_ms}}",
         "per archetype"),
        (f"{p}.{{queue_depth,mes_backlog,broker_queued_bytes}}.{{before,max,end}}",
         "queue depths around the phase (with twins or --mqtt)"),
        (f"{p}.{{queue_drained,queue_drain_s}}", "queues back to their level before the phase"),
        (f"{p}.in_flight", "time series: iterations in flight"),
    ]
    for c in spec.reconcile:
        out.append((f"reconcile.{c.name}.mismatches", c.description or "rows the check found"))
    for e in getattr(spec, "effects", None) or []:
        out.append((f"effects.{e.name}.{{seen,lost,duplicated,unseen}}",
                    e.description or f"ids the {e.twin} twin saw, against staging"))
    if getattr(spec, "isolation", None) is not None:
        out.append(("isolation.{leaks,leaked_values,object_leaks,requests,unchecked}",
                    "tenant isolation probes: answers holding another tenant's data, foreign "
                    "objects served (docs/isolation.md)"))
    for name, b in sorted(spec.environments["staging"].bindings.items()):
        if b.twin is not None:
            out.append((f"twins.{name}.<counter>", f"the {b.twin.kind} twin's counters and "
                        "faults.<kind>"))
    out += [(f"cost.{phase}.<counter>{{,.per_iteration}}", "cost counters the probes read "
             "(database statements, rows read …), and per iteration"),
            ("workload.paired.{blocks,block_s}, workload.paired.{old,new}.blocks",
             "the paired phase's blocks"),
            ("twins.<component>.<phase>.<counter>", "a twin's counters during a phase")]
    for m in getattr(spec, "monitors", None) or []:
        unit = f", {m.unit}" if m.unit else ""
        mp = "{baseline,paired,candidate}"  # one database: the paired phase is not split
        out.append((f"monitor.{mp}.{m.name}.{{{','.join(MONITOR_STATS)}}}",
                    f"monitor {m.name}{unit}" + (f" ({m.description})" if m.description
                                                 else "")))
        if m.per_tenant:
            out.append((f"monitor.{mp}.{m.name}.tenant.<tenant>.<stat>", "per tenant"))
        out.append((f"monitor.{mp}.{m.name}", "time series: every sample"))
    if getattr(spec, "rbac", None) is not None:
        out.append(("rbac.{violations,gained,lost,unenforced,probes}", "RBAC probes and the "
                    "permission diff"))
    if getattr(spec, "secrets", None) is not None:
        out.append(("secrets.found", "secrets found in configs, logs or evidence"))
    if getattr(spec, "tenant_config", None) is not None:
        out.append(("tenant_config.{drift,unexercised,tenants}", "tenants whose settings "
                    "differ production vs staging; production tenants the workload did not drive"))
    if getattr(spec, "audit", None) is not None:
        out.append(("audit.{entries,expected,missing}", "the audit trail against the "
                    "privileged actions"))
    out += [("backup.{seconds,bytes}", "the staging backup before the release: time to take "
             "and fingerprint it, its size (docs/backup.md)"),
            ("backup.{verified,verify_seconds,restore_seconds}", "1 when the backup, restored "
             "into a scratch database, held exactly the backed-up data (else 0); the verify's "
             "time and its restore's time")]
    out += [("migrate.{seconds,projected_seconds,scale,rows_staging,rows_production}",
             "the upgrade's duration on staging, and projected to production's row counts "
             "(docs/strategies.md)")]
    if any(str(r.strategy) == "recreate" for r in spec.releases):
        out.append(("deploy.{downtime_seconds,downtime_failed_probes,"
                    "maintenance_window_seconds}", "recreate: downtime a client saw through "
                    "the router, and the release's maintenance window (docs/strategies.md)"))
    if any(str(r.strategy) == "canary" for r in spec.releases):
        out.append(("deploy.canary.{failed_probes,step<n>.new_share,step<n>.failed_probes}",
                    "canary: answers from the new version at each traffic step, probes nobody "
                    "answered (docs/strategies.md)"))
    from plantstage.spec.recovery import recovery_signals

    out += list(recovery_signals().items())  # the rollback drill's recovery (docs/recovery.md)
    out += [("twins.{faults,failures}", "faults injected, twins that failed"),
            ("rollback.*, backup.*, parity.*, refresh.*, steps.*", "the rehearsal's steps")]
    phases = "{baseline,paired.old,paired.new,candidate}"
    return [(name.replace("<phase>", phases), meaning) for name, meaning in out]


def _line_of(loaded, path: tuple) -> str:
    # The loader's line map (built once, within bounds): no second parse of the spec.
    return loaded.where(*path)


def gate_problems(spec) -> list[tuple[tuple, str, str]]:
    """``(field path, message, hint)`` for each bad expression or unknown signal."""
    from plantstage.gates.evaluate import expressions

    cat = catalogue(spec)
    out = []
    for i, gate in enumerate(spec.gates):
        if gate.signal is not None:
            for field, name in (("signal", gate.signal), ("baseline", gate.baseline)):
                if name and (why := cat.problem(name)):
                    out.append((("gates", i, field), f"gate '{gate.name}': unknown signal "
                                f"'{name}': {why}", "docs/gates.md lists the signal catalogue"))
            continue
        if gate.use is not None:
            from plantstage.gates.library import expand_builtin

            for ref in expand_builtin(gate).refs:
                if why := cat.problem(ref):
                    out.append((("gates", i, "params"), f"gate '{gate.name}': {gate.use} reads "
                                f"'{ref}': {why}", "docs/gates.md lists the signal catalogue"))
        value_x, pass_x, warn_x, _, _ = expressions(gate)
        for field, text in (("value", value_x), ("pass", pass_x), ("warn", warn_x)):
            if text is None:
                continue
            where = ("gates", i, field if getattr(gate, field.replace("pass", "pass_"), None)
                     else "use")
            try:
                compile_expr(text)
            except CelSyntaxError as exc:
                out.append((where, f"gate '{gate.name}': {field} does not parse at "
                            f"{exc.position}: {exc.problem}", "see docs/gates.md"))
                continue
            for fn, line, col in _functions(text):
                if fn not in GATE_FUNCTIONS and fn not in _CEL_BUILTINS:
                    pos = f"line {line}, column {col}" if line > 1 else f"column {col}"
                    out.append((where, f"gate '{gate.name}': {field} calls unknown function "
                                f"'{fn}' at {pos}", f"functions: {', '.join(GATE_FUNCTIONS)}"))
            for ref in signal_refs(text):
                why = cat.problem(ref.name)
                if why:
                    pos = f"line {ref.line}, column {ref.column}" if ref.line > 1 \
                        else f"column {ref.column}"
                    out.append((where, f"gate '{gate.name}': {field} names unknown signal "
                                f"'{ref.name}' at {pos}: {why}",
                                "docs/gates.md lists the signal catalogue"))
    return out


def _functions(text: str):
    from plantstage.gates.cel import function_names

    return function_names(text)


def validate(loaded) -> None:
    """Raise :class:`SpecError` (file:line, gate name, position) for the first bad gate."""
    problems = gate_problems(loaded.spec)
    if problems:
        path, msg, hint = problems[0]
        more = len(problems) - 1
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise SpecError(msg, where=_line_of(loaded, path), hint=hint)
