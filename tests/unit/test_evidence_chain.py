"""The hash-chained, signed log; junit.xml; the report's SVG charts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from plantstage.evidence import chain, signing
from plantstage.evidence.charts import workload_charts
from plantstage.evidence.junit import to_junit


@pytest.fixture
def key_dir(tmp_path, monkeypatch):
    d = tmp_path / "keys"
    monkeypatch.setenv("PLANTSTAGE_KEY_DIR", str(d))
    monkeypatch.delenv("PLANTSTAGE_SIGNING_KEY", raising=False)
    return d


def test_no_key_is_made_unless_asked(key_dir):
    with pytest.raises(signing.SigningError) as exc:
        signing.load_signing_key()
    assert "plantstage keys init" in exc.value.one_line()
    assert not key_dir.exists()


def test_key_made_once_on_first_rehearsal_with_a_message(key_dir, capsys):
    k1 = signing.load_signing_key(create=True)
    assert "made an Ed25519 evidence signing key" in capsys.readouterr().err
    k2 = signing.load_signing_key(create=True)
    assert capsys.readouterr().err == ""
    assert signing.public_pem(k1) == signing.public_pem(k2)
    assert oct((key_dir / "signing-key.pem").stat().st_mode & 0o777) == "0o600"
    assert (key_dir / signing.PUBLIC_FILE).read_text() == signing.public_pem(k1)


def test_keys_init_is_deliberate_and_idempotent(key_dir):
    first = signing.init_key()
    assert first.created and first.path == key_dir / "signing-key.pem"
    again = signing.init_key()
    assert not again.created and again.fingerprint == first.fingerprint
    assert again.public_path.read_text() == first.public_pem
    # The base64 form it prints pins the same key as the PEM file.
    assert signing.parse_public_key(first.base64, where="b64").raw == signing.parse_public_key(
        str(first.public_path), where="pem").raw


def test_key_from_env_pem(key_dir, monkeypatch):
    pem = (signing.load_signing_key(echo=lambda m: None, create=True)
           .private_bytes(*_pem_args()).decode())
    monkeypatch.setenv("PLANTSTAGE_SIGNING_KEY", pem)
    assert signing.public_pem(signing.load_signing_key()) == signing.public_pem(
        signing._load_pem(pem.encode(), "x"))
    monkeypatch.setenv("PLANTSTAGE_SIGNING_KEY", "/no/such/key.pem")
    with pytest.raises(signing.SigningError):
        signing.load_signing_key()


def _pem_args():
    from cryptography.hazmat.primitives import serialization

    return (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())


def test_chain_detects_every_kind_of_edit(tmp_path, key_dir):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "evidence.json").write_text("{}")
    (run / "logs" / "app.log").write_text("hello")
    key = signing.load_signing_key(echo=lambda m: None, create=True)
    chain.append(run, "rehearsal", {"verdict": "GO"}, key=key)
    chain.append(run, "signoff", {"role": "qa"}, key=key)
    assert chain.verify(run).ok
    (run / "logs" / "app.log").write_text("hellO")
    v = chain.verify(run)
    assert not v.ok and v.problems == ["logs/app.log: edited after signing (sha256 differs)"]
    (run / "logs" / "app.log").write_text("hello")
    lines = (run / chain.CHAIN).read_text().splitlines()
    (run / chain.CHAIN).write_text(lines[1] + "\n")  # first entry removed
    assert any("chain broken" in p or "sequence" in p for p in chain.verify(run).problems)
    (run / chain.CHAIN).write_text("\n".join(lines) + "\n")
    sig = json.loads((run / chain.SIGNATURE).read_text())
    sig["signature"] = signing.sign(key, b"some other head")  # well-formed, wrong
    (run / chain.SIGNATURE).write_text(json.dumps(sig, indent=2) + "\n")
    assert chain.verify(run).problems == ["chain.sig: the Ed25519 signature does not verify"]
    (run / chain.SIGNATURE).write_text(json.dumps(sig))  # any other spelling is named too
    assert "chain.sig: not written as plantstage writes it (edited)" in chain.verify(run).problems


def test_unsealed_run_does_not_verify(tmp_path):
    assert not chain.verify(tmp_path).ok


def test_junit_one_case_per_gate():
    ev = {"run_id": "r", "verdict": "NO-GO", "spec": {"name": "s"}, "release": {"name": "1"},
          "score": {"pct": 50.0},
          "gates": [{"name": "a", "outcome": "pass", "value": 1.0, "threshold": "≤ 1"},
                    {"name": "b", "outcome": "fail", "value": 2.0, "threshold": "≤ 1",
                     "cause": "bad", "reason": "b = 2"},
                    {"name": "c", "outcome": "inconclusive", "value": None, "threshold": "",
                     "reason": "no data for x"},
                    {"name": "d", "outcome": "n/a", "value": None, "threshold": "",
                     "reason": "recreate runs one version at a time"}]}
    root = ET.fromstring(to_junit(ev))
    assert root.get("tests") == "4" and root.get("failures") == "1" and root.get("errors") == "1"
    assert root.get("skipped") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["b"].find("failure").get("message") == "bad; b = 2"
    assert cases["c"].find("error") is not None and cases["a"].find("failure") is None
    assert cases["d"].find("skipped").get("message") == "recreate runs one version at a time"


def test_charts_overlay_phases_with_faults():
    series = {
        "workload.baseline.f.throughput": [(100.0, 5.0), (101.0, 6.0)],
        "workload.baseline.g.throughput": [(100.0, 1.0), (101.0, 1.0)],
        "workload.candidate.f.throughput": [(200.0, 4.0), (201.0, 5.0)],
        "workload.baseline.in_flight": [(100.0, 3.0)],
        "workload.candidate.in_flight": [(200.0, 1.0)],
    }
    timeline = [{"at": 100.5, "twin": "wms", "kind": "outage", "detail": "503"},
                {"at": 150.0, "twin": "wms", "kind": "latency"}]  # between phases: dropped
    charts = workload_charts(series, {"twins": {"timeline": timeline}})
    ids = [c["id"] for c in charts]
    assert ids == ["chart-throughput", "chart-queue"]
    svg = charts[0]["svg"]
    assert 'data-points="4"' in svg and 'data-faults="1"' in svg
    assert "current: 7 iterations/s" in svg  # the two baseline flows summed at t=100
    assert "<script" not in svg
    assert workload_charts({}, {}) == []
