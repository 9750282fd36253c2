"""`plantstage verify`: any edited byte of a finished run's bundle is detected and named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _flip(path: Path, at: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_intact_run_verifies(copy_run, signing_key_dir):
    run = copy_run()
    r = run_cli("verify", str(run), env={"PLANTSTAGE_KEY_DIR": str(signing_key_dir)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "signed by key" in r.stdout


FILES = ["evidence.json", "report.html", "junit.xml", "ledger.sqlite", "signals.sqlite",
         "spec.yaml", "logs/migrations.log"]


def test_any_edited_file_is_named(copy_run, signing_key_dir):
    run = copy_run()
    for name in FILES:  # one byte each, in the middle of the file
        _flip(run / name, at=len((run / name).read_bytes()) // 2)
    r = run_cli("verify", str(run), env={"PLANTSTAGE_KEY_DIR": str(signing_key_dir)})
    assert r.returncode == 1
    for name in FILES:
        assert f"{name}: edited after signing" in r.stderr, r.stderr
    # A tampered bundle is never re-signed by the other verbs.
    r = run_cli("gate", str(run), env={"PLANTSTAGE_KEY_DIR": str(signing_key_dir)})
    assert r.returncode == 2 and "does not verify" in r.stderr


def test_edited_log_signature_added_and_removed_files(copy_run, signing_key_dir, tmp_path):
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    run = copy_run("a")
    text = (run / "chain.jsonl").read_text().replace('"rehearsal"', '"rehearsaL"')
    (run / "chain.jsonl").write_text(text)
    r = run_cli("verify", str(run), env=env)
    assert r.returncode == 1 and "chain.jsonl:1" in r.stderr
    run = copy_run("b")
    (run / "extra.txt").write_text("added")
    (run / "junit.xml").unlink()
    r = run_cli("verify", str(run), env=env)
    assert r.returncode == 1
    assert "extra.txt: added after signing" in r.stderr and "junit.xml: missing" in r.stderr
    run = copy_run("c")
    # Someone else's key: pinning the trusted key rejects it.
    other = tmp_path / "other-key"
    r = run_cli("verify", str(run), env=env)
    assert r.returncode == 0
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = run_cli("verify", str(run), "--key", str(other), env=env)
    assert r.returncode == 1 and "not the trusted key" in r.stderr
