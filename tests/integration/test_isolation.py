"""Tenant isolation probes through the CLI: the sample plant's two isolation defects are
NO-GO by the built-in key gate ``tenant-isolation``, with the leak named in the evidence."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import EXAMPLE, run_cli


def _rehearse(out: Path, release: str) -> dict:
    r = run_cli("rehearse", str(EXAMPLE), "--release", release, "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["verdict"] == "NO-GO"
    failed = {g["name"] for g in ev["gates"] if g["outcome"] == "fail"}
    assert "tenant-isolation" in failed, ev["gates"]
    assert "tenant-isolation" in "\n".join(map(str, ev.get("reasons") or []))
    return ev


def test_a_list_without_tenant_filter_is_no_go(tmp_path, production_db):
    ev = _rehearse(tmp_path / "run", "1.1.0-no-tenant-filter")
    iso = ev["sections"]["isolation"]
    assert ev["signals"]["isolation.leaks"] > 0
    assert ev["signals"]["isolation.object_leaks"] == 0
    leak = iso["leaking"][0]
    # The leaking request, the field path and one example of another tenant's value.
    assert leak["request"] == "work-orders"
    assert leak["example"]["field"].startswith("$[") and leak["example"]["value"]
    assert leak["example"]["owner"] != leak["tenant"]
    assert {x["request"] for x in iso["leaking"]} == {"work-orders"}  # the others are clean


def test_an_id_lookup_without_tenant_check_is_no_go(tmp_path, production_db):
    ev = _rehearse(tmp_path / "run", "1.1.0-object-reference")
    iso = ev["sections"]["isolation"]
    assert ev["signals"]["isolation.leaks"] == 0
    assert ev["signals"]["isolation.object_leaks"] > 0
    leak = iso["object_leaking"][0]
    assert leak["owner"] != leak["tenant"] and leak["http"] == 200
    assert f"/{leak['tenant']}/" in leak["url"] and leak["id"] in leak["url"]
    # The control: each tenant can read its own object, so the refusals elsewhere mean it.
    assert all(c["http"] == 200 for c in iso["controls"])
