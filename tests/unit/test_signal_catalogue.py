"""Every signal the docs name is one `plantstage check` accepts, and the catalogue lists flows'
declared counters."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import yaml

from plantstage.gates.catalogue import catalogue, signal_catalogue
from plantstage.spec.loader import load_spec

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLACEHOLDERS = {"<phase>": "candidate", "<flow>": "f", "<step>": "s", "<kind>": "http_500",
                "<counter>": "c", "<archetype>": "a", "<a>": "a", "<stat>": "p95_ms",
                "<queue>": "queue_depth", "<name>": "n"}


def _expand(name: str) -> list[str]:
    for k, v in PLACEHOLDERS.items():
        name = name.replace(k, v)
    parts = re.split(r"\{([^{}]*)\}", name)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def documented(doc: str) -> list[str]:
    names = []
    for span in re.findall(r"`([^`\s]+)`", (DOCS / doc).read_text()):
        if span.startswith("workload.") and "…" not in span and "*" not in span:
            names += [n for n in _expand(span) if n.split(".")[1] in ("baseline", "candidate")]
    return names


def _spec(tmp_path: Path) -> Path:
    (tmp_path / "docflows.py").write_text(
        "from plantstage.api import flow\n\n\n"
        "@flow('goods-receipt', signals={'receipts': 'receipts booked'})\n"
        "async def goods_receipt(ctx):\n    ctx.count('receipts')\n\n\n"
        "async def f(ctx):\n    pass\n")
    spec = {
        "version": 1, "name": "t",
        "estate": {"components": {"app": {"kind": "service", "tier": 1}},
                   "tenants": [{"code": "north", "archetype": "a"}]},
        "environments": {"production": {"bindings": {"app": {"url": "http://prod.invalid"}}},
                         "staging": {"bindings": {"app": {"url": "http://127.0.0.1:1"}}}},
        "current": "1",
        "releases": [{"name": "1", "version": "1",
                      "artifact": {"path": ".", "sha256": "0" * 64}}],
        "plugins": ["docflows"],
        "workload": {"archetypes": {"a": {"flows": [{"flow": "goods-receipt", "rate": 1}]}},
                     "flows": [{"flow": "docflows:f", "rate": 1}]},
    }
    (tmp_path / "plantstage.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path


def test_every_documented_workload_signal_is_accepted(tmp_path):
    cat = catalogue(load_spec(_spec(tmp_path)).spec)
    names = documented("workload.md") + documented("flows.md")
    assert "workload.candidate.queue_drained" in names  # the one check used to reject
    assert "workload.candidate.goods-receipt.step.wait-in-stock.p95_ms" in names
    rejected = {n: cat.problem(n) for n in names if cat.problem(n)}
    assert not rejected


def test_the_catalogue_lists_declared_counters_and_flow_labels(tmp_path):
    listed = dict(signal_catalogue(load_spec(_spec(tmp_path))))
    ph = "workload.{baseline,paired.old,paired.new,candidate}"
    assert listed[f"{ph}.goods-receipt.receipts"] == "receipts booked"
    assert f"{ph}.f.<counter>" in listed  # declares none
    assert f"{ph}.{{queue_drained,queue_drain_s}}" in listed
