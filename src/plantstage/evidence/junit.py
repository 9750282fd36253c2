"""``junit.xml``: one test case per gate, so CI systems show gates as tests.

pass → passed; warn and waived → passed with the reason in ``system-out``; fail → ``failure``;
inconclusive → ``error`` (no data is not a pass, and not a measured failure either); n/a (a
gate the release's strategy cannot exercise, docs/strategies.md) → ``skipped`` with its reason.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any


def _iso(epoch: float | None) -> str:
    """JUnit's timestamp is ISO 8601 (seconds, UTC)."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%S")


def to_junit(evidence: dict[str, Any]) -> str:
    gates = evidence.get("gates", [])
    suite = ET.Element("testsuite", {
        "name": f"plantstage gates: {evidence['spec']['name']} {evidence['release']['name']}",
        "tests": str(len(gates)),
        "failures": str(sum(g["outcome"] == "fail" for g in gates)),
        "errors": str(sum(g["outcome"] == "inconclusive" for g in gates)),
        "skipped": str(sum(g["outcome"] == "n/a" for g in gates)),
        "timestamp": _iso(evidence.get("judged_at") or evidence.get("ended_at")),
    })
    props = ET.SubElement(suite, "properties")
    for k, v in (("run_id", evidence["run_id"]), ("verdict", evidence["verdict"]),
                 ("score", (evidence.get("score") or {}).get("pct"))):
        ET.SubElement(props, "property", {"name": k, "value": "" if v is None else str(v)})
    for g in gates:
        case = ET.SubElement(suite, "testcase", {"classname": "plantstage.gates",
                                                 "name": g["name"], "time": "0"})
        value = "—" if g.get("value") is None else f"{g['value']:.6g}"
        detail = (f"value {value}; threshold {g.get('threshold') or '—'}; key "
                  f"{'yes' if g.get('key') else 'no'}; weight {g.get('weight', 1):g}")
        if g.get("decision"):  # a comparison's effect, interval and decision
            detail += f"; {g['decision']}"
        text = "; ".join(x for x in (g.get("cause"), g.get("reason")) if x)
        if g["outcome"] == "fail":
            el = ET.SubElement(case, "failure", {"message": text or "gate failed",
                                                 "type": "gate-failed"})
            el.text = detail
        elif g["outcome"] == "inconclusive":
            # It did not see the problem its cause describes: only why it could not decide.
            el = ET.SubElement(case, "error", {"message": g.get("reason") or "no data",
                                               "type": "inconclusive"})
            el.text = detail
        elif g["outcome"] == "n/a":
            ET.SubElement(case, "skipped", {"message": g.get("reason") or "not applicable"})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{g['outcome']}: {detail}" + (f"; {text}" if g["outcome"] != "pass"
                                                       and text else "")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") \
        + "\n"
