"""The secrets scan: what counts as a secret, where it is reported, and what never counts."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from plantstage.security.secrets import Scanner, entropy, random_looking

TOKEN = "Zx9kQ2mP7vL4rT8wN3bY6cH1jF5s"  # mixed case and digits, random-looking
PEM_HEAD = "-----BEGIN RSA " + "PRIVATE KEY-----"


def test_known_secret_in_a_log_names_file_line_and_source_never_the_value(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("started\nconnecting to wms\nusing staging-wms-token-19cd for calls\n")
    hits = Scanner({"staging-wms-token-19cd": "erp-env:WMS_API_TOKEN"}).scan_file(
        log, "logs/app.log")
    assert [h.line() for h in hits] == ["logs/app.log:3: known secret (erp-env:WMS_API_TOKEN)"]
    assert "19cd" not in hits[0].line()


def test_private_key_credential_and_high_entropy_token():
    s = Scanner()
    assert s.scan_line(PEM_HEAD) == ["private key"]
    assert s.scan_line("WMS outbox to http://x with api token=abcdefgh12") == ["credential"]
    assert s.scan_line(f"session started: {TOKEN}") == ["high-entropy token"]
    assert s.scan_line(f"api_key: {TOKEN}") == ["credential", "high-entropy token"]


@pytest.mark.parametrize("line", [
    hashlib.sha256(b"x").hexdigest(),                      # plantstage's digests
    f"sha256 {hashlib.sha256(b'y').hexdigest()} ok",
    str(uuid.uuid4()), uuid.uuid4().hex,                   # ids
    "erp-env:WMS_API_TOKEN: secret:7ae1245465db51c1",      # parity's redacted form
    "postgresql://app:secret-7ae1245465db51c1@db/x",
    "token=*****", "password: ${DB_PASSWORD}", "token = <redacted>",
    "INFO sampleish.integrations consumer started on topic plant/+/events",
    "ProductionConfirmationMessageIdKey",                   # an identifier, no digit
    "POST /x/y/inventory/adjustments HTTP/1.1 201",
])
def test_never_a_secret(line):
    assert Scanner().scan_line(line) == []


def test_config_lines_that_hold_declared_secrets_are_where_secrets_belong():
    s = Scanner({"staging-example-0b51e2": "erp-env:ERP_SECRET_KEY"},
                secret_keys=["*secret*", "*token*"])
    assert s.scan_line("ERP_SECRET_KEY=staging-example-0b51e2", config=True) == []
    # … but the same value under another key, or a private key anywhere, is a hit.
    assert s.scan_line("LOG_PREFIX=staging-example-0b51e2", config=True) == [
        "known secret (erp-env:ERP_SECRET_KEY)"]
    assert s.scan_line(f"TLS_KEY={PEM_HEAD}", config=True) == ["private key"]


def test_evidence_free_text_is_scanned_digest_fields_are_not():
    s = Scanner({"hunter2-hunter2": "db password"})
    ev = {"smoke": {"checks": [{"detail": "login with hunter2-hunter2 failed"}]},
          "artifact": {"sha256": TOKEN}, "chain": {"signature": TOKEN}}
    hits = s.scan_evidence(ev)
    assert [h.line() for h in hits] == [
        "evidence.smoke.checks[0].detail: known secret (db password)"]


def test_allow_list_and_thresholds():
    assert entropy("aaaa") == 0.0 and entropy("ab") == 1.0
    assert not random_looking("Ab1" * 10, 20, 4.0)         # repetitive: low entropy
    assert random_looking(TOKEN, 20, 4.0)
    assert Scanner(allow=[r"^Zx9k"]).scan_line(TOKEN) == []
    assert Scanner(min_length=40).scan_line(TOKEN) == []
