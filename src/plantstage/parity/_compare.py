"""Compare the facts two environments show, one layer at a time.

Every key either side shows becomes one finding: ``same``; ``allowed`` when a declared
difference covers it (and the difference is of the declared kind — a scale-*down*, a
*hostname*); ``drift`` with the severity of its component's tier otherwise; ``unknown`` when
either side could not be read. A key is never ``same`` unless both sides were read and agree,
and an ``unknown`` blocks (whatever its component's tier) unless a declared difference with
``differ: unknown`` covers it: what could not be compared is not known to be faithful.
"""

from __future__ import annotations

import fnmatch
from typing import Any
from urllib.parse import urlsplit

from plantstage.parity._model import Finding, LayerFacts
from plantstage.parity.collectors.access import NOT_APPLICABLE
from plantstage.spec.parity import AllowedDifference, ParitySpec

_MISSING = object()


def compare_layer(layer: str, a: LayerFacts, b: LayerFacts, names: tuple[str, str],
                  pspec: ParitySpec, tiers: dict[str, int]) -> tuple[list[Finding], list[str]]:
    """Findings of one layer, and notes (things neither side has, e.g. grants on SQLite)."""
    findings: list[Finding] = []
    notes: list[str] = []
    scopes: dict[str, dict[str, tuple[str | None, str]]] = {}
    for side, lf in zip(names, (a, b), strict=True):
        for scope, val in lf.unknown.items():
            scopes.setdefault(scope, {})[side] = val
    active: list[str] = []
    rules = [r for r in pspec.allowed if r.layer in ("*", layer)]
    for scope, sides in sorted(scopes.items()):
        reasons = [r for _, r in sides.values()]
        if len(sides) == 2 and all(r.startswith(NOT_APPLICABLE) for r in reasons):
            if reasons[0][len(NOT_APPLICABLE):] not in notes:
                notes.append(reasons[0][len(NOT_APPLICABLE):])
            continue
        if len(sides) == 1 and reasons[0].startswith(NOT_APPLICABLE):
            # One engine has no such thing (SQLite: no roles or grants): what the other
            # engine shows under this scope cannot be compared with anything — a note, and
            # not drift. Engines themselves are compared in the versions layer.
            side = next(iter(sides))
            other = names[1] if side == names[0] else names[0]
            shown = sum(1 for k in (b if side == names[0] else a).facts if k.startswith(scope))
            note = f"{side}: {reasons[0][len(NOT_APPLICABLE):]}"
            notes.append(note + (f"; {other}'s {shown} {scope.split('.')[0]}(s) of "
                                 f"{scope[len(scope.split('.')[0]) + 1:].rstrip(':')} not "
                                 f"compared" if shown else ""))
            active.append(scope)
            continue
        active.append(scope)
        comp = next(iter(sides.values()))[0]
        why = "; ".join(f"{side}: {r.removeprefix(NOT_APPLICABLE)}"
                        for side, (_, r) in sides.items())
        key = scope.rstrip(".:") or "*"
        f = Finding(layer, key, "unknown", comp, reason=why)
        rule = next((r for r in rules if r.differ == "unknown"
                     and (_matches(r, comp, key) or _matches(r, comp, scope))), None)
        if rule is not None:
            f.reason += f" — may be unknown: {rule.reason}"
        else:
            f.blocking, f.severity = True, _severity(comp, key, pspec, tiers)
        findings.append(f)
    for key in sorted(a.facts.keys() | b.facts.keys()):
        if any(key.startswith(s) for s in active):
            continue
        fa, fb = a.facts.get(key), b.facts.get(key)
        comp = (fa or fb).component
        va = fa.value if fa else _MISSING
        vb = fb.value if fb else _MISSING
        problem = (fb.problem if fb else None) or (fa.problem if fa else None)
        f = Finding(layer, key, "same", comp, production=_show(va), staging=_show(vb))
        if not problem and va == vb:
            findings.append(f)
            continue
        rule_text = ""
        if not problem:
            for rule in rules:
                if _matches(rule, comp, key):
                    ok, why = _permits(rule, va, vb)
                    if ok:
                        f.status, f.reason = "allowed", rule.reason
                        break
                    rule_text = f" (declared difference does not cover it: {why})"
        if f.status != "allowed":
            f.status = "drift"
            f.severity = _severity(comp, key, pspec, tiers)
            f.blocking = f.severity in pspec.blocks
            f.reason = (problem or _describe(va, vb, names)) + rule_text
        findings.append(f)
    return findings, notes


def _show(v: Any) -> Any:
    return None if v is _MISSING else v


def _matches(rule: AllowedDifference, comp: str | None, key: str) -> bool:
    return fnmatch.fnmatchcase(comp or "", rule.component) and fnmatch.fnmatchcase(key, rule.key)


def _permits(rule: AllowedDifference, a: Any, b: Any) -> tuple[bool, str]:
    if rule.differ == "any":
        return True, ""
    if rule.differ == "unknown":
        return False, "it allows the key to be unreadable, not to differ"
    if a is _MISSING or b is _MISSING:
        return False, f"{rule.differ} needs the key on both sides"
    if rule.differ == "scale-down":
        try:
            if float(b) <= float(a):
                return True, ""
        except (TypeError, ValueError):
            return False, "scale-down needs numbers"
        return False, "staging is scaled above production"
    if rule.differ == "simulated":
        if b in ("simulated", "mirrored"):
            return True, ""
        return False, f"staging's fidelity is {b!r}, not simulated or mirrored"
    # hostname: the values may differ only in where they point (host and port).
    if isinstance(a, str) and isinstance(b, str):
        if "://" not in a and "://" not in b:
            return True, ""
        try:
            pa, pb = urlsplit(a), urlsplit(b)
            same = (pa.scheme, pa.path, pa.query, pa.username) == \
                   (pb.scheme, pb.path, pb.query, pb.username)
        except ValueError:
            same = False
        if same:
            return True, ""
    return False, "the values differ in more than host and port"


def _severity(comp: str | None, key: str, pspec: ParitySpec, tiers: dict[str, int]) -> str:
    candidates = [comp] if comp else []
    if "->" in key:  # an edge or network rule: as severe as the more critical end
        ends = key.split(".", 1)[-1].split(":", 1)[-1].split("->")
        candidates += ends
    known = [tiers[c] for c in candidates if c in tiers]
    return pspec.severity_of_tier(min(known) if known else 2).value


def _describe(a: Any, b: Any, names: tuple[str, str]) -> str:
    if a is _MISSING:
        return f"only in {names[1]}"
    if b is _MISSING:
        return f"missing in {names[1]}"
    if isinstance(a, list) and isinstance(b, list):
        plus = sorted(set(map(str, b)) - set(map(str, a)))
        minus = sorted(set(map(str, a)) - set(map(str, b)))
        parts = [f"+{x}" for x in plus] + [f"−{x}" for x in minus]
        return f"{names[1]} differs: " + " ".join(parts) if parts else "order differs"
    if isinstance(a, str) and a.startswith("secret:"):
        return "the secret differs (compared by digest)"
    return f"{names[0]} {a!r}, {names[1]} {b!r}"
