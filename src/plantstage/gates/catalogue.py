"""The signal catalogue a spec implies, and check-time validation of gate expressions.

Signal names a rehearsal of a spec can record (documented in docs/gates.md):

* ``workload.<phase>.<flow>.<stat>`` — phase ``baseline`` or ``candidate``; ``flow`` one of the
  flows the spec drives (its archetypes' flows, ``workload.flows``); any statistic or business
  counter after it; and the phase-level ``workload.<phase>.{iterations, errors, error_rate,
  dropped, unfinished, archetypes, in_flight, errors.<kind>, business.<counter>,
  archetype.<a>.…}``;
* ``reconcile.<check>.mismatches`` for each ``reconcile`` check;
* ``rollback.*``, ``backup.*``, ``parity.*``, ``refresh.*``, ``twins.*`` (twins.<component>.…
  names a component bound to a twin).
"""

from __future__ import annotations

from dataclasses import dataclass

from plantstage.errors import SpecError
from plantstage.gates.cel import GATE_FUNCTIONS, CelSyntaxError, compile_expr, signal_refs

PHASES = ("baseline", "candidate")
PHASE_STATS = {"iterations", "errors", "error_rate", "dropped", "unfinished", "archetypes",
               "in_flight", "business", "archetype", "count", "rate"}
OPEN_PREFIXES = ("rollback.", "backup.", "parity.", "refresh.", "steps.")
#: CEL's standard global functions and macros (calls the parser sees as ident_arg).
_CEL_BUILTINS = {"size", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn",
                 "duration", "timestamp", "matches", "has"}


@dataclass
class Catalogue:
    flows: set[str]
    reconcile: set[str]
    twins: set[str]

    def problem(self, name: str) -> str | None:
        """Why ``name`` cannot be a signal of this spec (None if it can)."""
        parts = name.split(".")
        if parts[0] == "workload":
            if len(parts) < 3 or parts[1] not in PHASES:
                return f"workload signals are workload.<{'|'.join(PHASES)}>.<flow>.<stat>"
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
                "backup.*, parity.*, refresh.*, twins.*)")


def catalogue(spec) -> Catalogue:
    from plantstage.workload.archetypes import archetypes

    flows = {f.label for f in spec.workload.flows}
    try:
        for a in archetypes(spec.workload).values():
            flows |= {f.label for f in a.flows}
    except Exception:  # noqa: BLE001 - a bad archetype is the workload check's to report
        pass
    twins = {name for name, b in spec.environments["staging"].bindings.items()
             if b.twin is not None}
    return Catalogue(flows, {c.name for c in spec.reconcile}, twins)


def _line_of(loaded, path: tuple) -> str:
    import yaml

    from plantstage.spec.loader import _line_map, _nearest_line

    try:
        lines = _line_map(yaml.compose(loaded.text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return str(loaded.path)
    line = _nearest_line(lines, path)
    return f"{loaded.path}:{line}" if line else str(loaded.path)


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
