"""CEL for gates and signoff conditions: compiling, the functions gates call, evaluation.

Library choice: ``cel-python`` (pure Python) rather than ``common-expression-language`` (Rust
bindings). It exposes the parse tree (lark), which ``plantstage check`` needs to find the signal
names a gate uses and where they are in the expression; it needs no native wheel; and a run
judges a handful of gates, so the Rust version's speed would buy nothing.

Signals are doubles. CEL compares ``double == int`` as a type error (no overload), so write
``== 0.0`` or ``<= 0``; an expression that errors is ``inconclusive`` with the error as reason,
never a pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import celpy
import celpy.celtypes as ct
from celpy.celparser import CELParseError

#: Functions that take a signal name as their first argument (checked against the catalogue).
SIGNAL_FUNCTIONS = ("signal", "baseline", "last_go", "samples")
#: Every function a gate may call besides CEL's standard ones.
GATE_FUNCTIONS = (*SIGNAL_FUNCTIONS, "matching", "max", "min", "abs", "sum", "mean", "last",
                  "mw_worse")


class CelSyntaxError(Exception):
    def __init__(self, problem: str, line: int, column: int):
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.column = column

    @property
    def position(self) -> str:
        return f"line {self.line}, column {self.column}" if self.line > 1 \
            else f"column {self.column}"


class MissingData(Exception):
    """A signal a gate needs is not in the run (or has too few samples)."""


@functools.cache
def _env() -> celpy.Environment:
    return celpy.Environment()


@functools.lru_cache(maxsize=512)
def compile_expr(text: str):
    """Parse a CEL expression; :class:`CelSyntaxError` carries the 1-based line and column."""
    try:
        return _env().compile(text)
    except CELParseError as exc:
        line = getattr(exc, "line", None) or 1
        column = getattr(exc, "column", None) or 1
        # cel-python's message is the expression with a caret; say what is there instead.
        lines = text.splitlines() or [""]
        rest = lines[line - 1][column - 1:].strip() if line <= len(lines) else ""
        later = "".join(lines[line:]).strip()
        if not rest and not later:
            problem = "the expression ends too early"
        elif not later and len(rest.split()) == 1:
            problem = f"the expression ends after {rest!r}"
        else:
            problem = f"unexpected {(rest or later)[:20]!r}"
        raise CelSyntaxError(problem, line, column) from None


@dataclass
class SignalRef:
    function: str
    name: str
    line: int
    column: int


def signal_refs(text: str) -> list[SignalRef]:
    """The string-literal signal names an expression passes to signal(), baseline() …"""
    tree = compile_expr(text)
    refs = []
    for sub in tree.iter_subtrees():
        if sub.data != "ident_arg" or not sub.children:
            continue
        fn = str(sub.children[0])
        if fn not in SIGNAL_FUNCTIONS or len(sub.children) < 2:
            continue
        first = sub.children[1].children[0] if sub.children[1].children else None
        if first is None:
            continue
        toks = [t for t in first.scan_values(lambda v: hasattr(v, "type"))]
        if len(toks) == 1 and toks[0].type == "STRING_LIT":
            tok = toks[0]
            refs.append(SignalRef(fn, _unquote(str(tok)), tok.line, tok.column))
    return refs


def function_names(text: str) -> list[tuple[str, int, int]]:
    """Every global function an expression calls, with its position."""
    tree = compile_expr(text)
    out = []
    for sub in tree.iter_subtrees():
        if sub.data == "ident_arg" and sub.children:
            tok = sub.children[0]
            out.append((str(tok), tok.line, tok.column))
    return out


def _unquote(lit: str) -> str:
    for q in ('"""', "'''", '"', "'"):
        if lit.startswith(q) and lit.endswith(q) and len(lit) >= 2 * len(q):
            return lit[len(q):-len(q)]
    return lit


# -- values ----------------------------------------------------------------------------------
def to_cel(value: Any) -> Any:
    """Plain Python → CEL values (dicts, lists, numbers, strings, bools, None)."""
    if isinstance(value, bool):
        return ct.BoolType(value)
    if isinstance(value, int):
        return ct.IntType(value)
    if isinstance(value, float):
        return ct.DoubleType(value)
    if isinstance(value, str):
        return ct.StringType(value)
    if isinstance(value, Mapping):
        return ct.MapType({ct.StringType(str(k)): to_cel(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return ct.ListType([to_cel(v) for v in value])
    if value is None:
        return None
    return ct.StringType(str(value))


def from_cel(value: Any) -> Any:
    if isinstance(value, ct.BoolType):
        return bool(value)
    if isinstance(value, ct.IntType | ct.UintType):
        return int(value)
    if isinstance(value, ct.DoubleType):
        return float(value)
    return value


class SampleSource(Protocol):
    """Where raw samples come from: a run's :class:`plantstage.signals.SignalStore`."""

    def samples(self, phase: str, flow: str, version: str) -> list[tuple[int, float, float,
                                                                          bool]]: ...


@dataclass
class GateData:
    """What gate functions read: the run's values, time series and the last GO run's values."""

    signals: Mapping[str, float]
    series: Mapping[str, list[tuple[float, float]]] = field(default_factory=dict)
    last_go: Mapping[str, float] | None = None
    min_samples: int = 1
    missing: list[str] = field(default_factory=list)
    #: The run's raw per-iteration samples (``.samples(phase, flow, version)``), for the
    #: paired comparison; None when the caller has none (the gates that need them are then
    #: inconclusive).
    recording: SampleSource | None = None

    def value(self, name: str) -> float:
        v = self.signals.get(name)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            self.missing.append(f"no data for {name}")
            raise MissingData(name)
        self._guard_samples(name)
        return float(v)

    def _guard_samples(self, name: str) -> None:
        """Workload statistics come with a count: too few iterations is not evidence."""
        if self.min_samples <= 1 or not name.startswith("workload."):
            return
        head, _, stat = name.rpartition(".")
        if stat.endswith("_ms") or stat in ("rate", "error_rate"):
            count = self.signals.get(f"{head}.count", self.signals.get(f"{head}.iterations"))
            if count is not None and count < self.min_samples:
                self.missing.append(f"too few samples for {name}: {count:.0f} < "
                                    f"{self.min_samples}")
                raise MissingData(name)

    def points(self, name: str) -> list[float]:
        pts = [v for _, v in self.series.get(name, [])]
        if len(pts) < max(self.min_samples, 1):
            self.missing.append(f"too few samples for {name}: {len(pts)} < "
                                f"{max(self.min_samples, 1)}" if pts else f"no data for {name}")
            raise MissingData(name)
        return pts


def _functions(data: GateData) -> dict[str, Callable]:
    from plantstage.gates.stats import mann_whitney_worse

    def signal(name):
        return ct.DoubleType(data.value(str(name)))

    def baseline(name):
        n = str(name)
        if not n.startswith("workload.candidate."):
            raise ValueError(f"baseline() takes a workload.candidate.* signal, not {n}")
        return ct.DoubleType(data.value("workload.baseline." + n[len("workload.candidate."):]))

    def last_go(name):
        n = str(name)
        if data.last_go is None:
            data.missing.append(f"no earlier GO rehearsal to compare {n} with")
            raise MissingData(n)
        v = data.last_go.get(n)
        if v is None:
            data.missing.append(f"the last GO rehearsal has no {n}")
            raise MissingData(n)
        return ct.DoubleType(float(v))

    def samples(name):
        return ct.ListType([ct.DoubleType(v) for v in data.points(str(name))])

    def matching(prefix, suffix):
        p, s = str(prefix), str(suffix)
        vals = [v for k, v in sorted(data.signals.items()) if k.startswith(p) and k.endswith(s)]
        if not vals:
            data.missing.append(f"no data for {p}*{s}")
            raise MissingData(p)
        return ct.ListType([ct.DoubleType(float(v)) for v in vals])

    def last(xs):
        if not len(xs):
            data.missing.append("no samples")
            raise MissingData("last")
        return ct.DoubleType(float(xs[-1]))

    def _nums(xs) -> list[float]:
        return [float(x) for x in xs]

    def mw_worse(a, b, alpha, min_effect):
        return ct.BoolType(mann_whitney_worse(_nums(a), _nums(b), float(alpha),
                                              float(min_effect)))

    return {
        "signal": signal, "baseline": baseline, "last_go": last_go, "samples": samples,
        "matching": matching, "last": last,
        "max": lambda a, b: ct.DoubleType(max(float(a), float(b))),
        "min": lambda a, b: ct.DoubleType(min(float(a), float(b))),
        "abs": lambda a: ct.DoubleType(abs(float(a))),
        "sum": lambda xs: ct.DoubleType(sum(_nums(xs))),
        "mean": lambda xs: ct.DoubleType(sum(_nums(xs)) / len(xs)) if len(xs)
        else ct.DoubleType(math.nan),
        "mw_worse": mw_worse,
    }


def evaluate(text: str, variables: Mapping[str, Any], data: GateData | None = None) -> Any:
    """Evaluate an expression; raises :class:`MissingData` or ``ValueError`` (type errors …).

    A gate is inconclusive when any signal it asked for was missing, even if CEL's
    error-absorbing ``||`` / ``&&`` would have produced a value anyway.
    """
    data = data if data is not None else GateData({})
    before = len(data.missing)
    prog = _env().program(compile_expr(text), functions=_functions(data))
    try:
        result = prog.evaluate({k: to_cel(v) for k, v in variables.items()})
    except celpy.CELEvalError as exc:
        if len(data.missing) > before:
            raise MissingData(data.missing[-1]) from None
        raise ValueError(_eval_message(exc)) from None
    if len(data.missing) > before:
        raise MissingData(data.missing[-1])
    if isinstance(result, celpy.CELEvalError):
        raise ValueError(_eval_message(result))
    return from_cel(result)


def _eval_message(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 3 and args[2]:
        inner = args[2][0] if isinstance(args[2], tuple) else args[2]
        return str(inner)
    return str(args[0]) if args else str(exc)
