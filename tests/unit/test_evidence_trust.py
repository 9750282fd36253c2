"""Which public keys a verifier trusts, and how a bad one is reported (one line, no trace)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plantstage.evidence import signing


def _pub(tmp_path, name="k.pub.pem"):
    key = Ed25519PrivateKey.generate()
    pem = signing.public_pem(key)
    p = tmp_path / name
    p.write_text(pem)
    return p, signing.raw_public(pem), key


def test_a_key_is_a_pem_file_pem_text_or_base64(tmp_path):
    p, raw, _ = _pub(tmp_path)
    b64 = signing.public_b64(p.read_text())
    assert signing.parse_public_key(str(p), where="x").raw == raw
    assert signing.parse_public_key(p.read_text(), where="x").raw == raw
    assert signing.parse_public_key(b64, where="x").raw == raw
    assert signing.parse_public_key("k.pub.pem", where="x", base_dir=tmp_path).raw == raw


@pytest.mark.parametrize("value, says", [
    ("/no/such/key.pem", "no key file here"),
    ("not a key at all", "no key file here"),
    ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a PEM public key"),
    ("x" * 5000, "key"),
    ("a\x00b", "key"),
])
def test_a_bad_key_is_one_line(value, says):
    with pytest.raises(signing.SigningError) as exc:
        signing.parse_public_key(value, where="--key")
    line = exc.value.one_line()
    assert says in line and "\n" not in line and len(line) < 600


def test_a_private_key_or_another_algorithm_is_refused_with_a_hint(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    priv = tmp_path / "priv.pem"
    priv.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(signing.SigningError, match="private key"):
        signing.parse_public_key(str(priv), where="--key")
    ecpub = tmp_path / "ec.pem"
    ecpub.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(signing.SigningError, match="not an Ed25519 public key"):
        signing.parse_public_key(str(ecpub), where="--key")
    (tmp_path / "dir.pem").mkdir()
    with pytest.raises(signing.SigningError):
        signing.parse_public_key(str(tmp_path / "dir.pem"), where="--key")


def test_sources_explicit_env_and_project_never_the_bundle(tmp_path, monkeypatch):
    monkeypatch.delenv(signing.TRUSTED_ENV, raising=False)
    project = tmp_path / "project"
    run = project / ".plantstage" / "runs" / "r1"
    run.mkdir(parents=True)
    a, raw_a, _ = _pub(project, "board.pub.pem")
    b, raw_b, _ = _pub(tmp_path, "b.pub.pem")
    c, raw_c, _ = _pub(tmp_path, "c.pub.pem")
    assert signing.trusted_keys(run) == []
    # Inside the bundle: a forger writes these, so they are never read.
    (run / ".plantstage").mkdir()
    (run / ".plantstage" / "trusted_keys").write_text(str(c) + "\n")
    assert signing.trusted_keys(run) == []
    (project / ".plantstage" / "trusted_keys").write_text(
        "# the release board\nboard.pub.pem  # relative to the project\n\n")
    keys = signing.trusted_keys(run)
    assert [k.raw for k in keys] == [raw_a] and keys[0].source.endswith("trusted_keys:2")
    monkeypatch.setenv(signing.TRUSTED_ENV, os.pathsep.join(
        [str(b), signing.public_b64(c.read_text())]))
    assert [k.raw for k in signing.trusted_keys(run)] == [raw_b, raw_c, raw_a]
    # --key replaces every other source.
    assert [k.raw for k in signing.trusted_keys(run, explicit=[c])] == [raw_c]
    (project / ".plantstage" / "trusted_keys").write_text("garbage here\n")
    with pytest.raises(signing.SigningError) as exc:
        signing.trusted_keys(run)
    assert "trusted_keys:1" in exc.value.one_line()
