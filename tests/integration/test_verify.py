"""`plantstage verify`: read-only, trust from a pinned key, any edited byte named.

All on copies of the one recorded demo run (tests/conftest.py); no rehearsal per case."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _flip(path: Path, at: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _tree_digest(root: Path) -> str:
    """Every entry's name, type, mode and bytes: changes if anything at all is written."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(f"{stat.S_IFMT(st.st_mode)}:{stat.S_IMODE(st.st_mode)}".encode())
        if p.is_file() and not p.is_symlink():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.fixture
def owner(signing_key_dir):
    """The key that signed the recorded run: its env and its public key file."""
    pub = signing_key_dir / "signing-key.pub.pem"
    assert pub.is_file(), "rehearse writes the public key beside the key it makes"
    return {"env": {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}, "pub": pub}


@pytest.fixture
def auditor(tmp_path):
    """Someone with no signing key at all and nothing pinned in the environment."""
    d = tmp_path / "auditor-keys"
    return {"PLANTSTAGE_KEY_DIR": str(d), "PLANTSTAGE_TRUSTED_KEYS": "",
            "PLANTSTAGE_SIGNING_KEY": ""}


def test_verify_is_read_only_and_says_integrity_only_without_a_pinned_key(copy_run, auditor,
                                                                          owner):
    run = copy_run()
    before = _tree_digest(run)
    r = run_cli("verify", str(run), env=auditor)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "integrity only, signer not trusted" in r.stderr
    assert "intact" in r.stdout
    assert _tree_digest(run) == before  # byte-identical: nothing written, nothing signed
    assert not Path(auditor["PLANTSTAGE_KEY_DIR"]).exists()  # and no key made
    r = run_cli("verify", str(run), "--key", str(owner["pub"]), env=auditor)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "signed by trusted key" in r.stdout
    assert _tree_digest(run) == before
    # The auditor's checks changed nothing the owner does next.
    r = run_cli("gate", str(run), env=owner["env"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_cli("verify", str(run), "--key", str(owner["pub"]),
                   env=auditor).returncode == 0


AUDIT = textwrap.dedent("""
    import os, sys
    run, rest = sys.argv[1], sys.argv[2:]
    bad = []
    W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & W)
            if writes:
                bad.append(f"open {path} {mode} {flags}")
        elif event in ("os.remove", "os.rename", "os.mkdir", "os.chmod", "os.symlink",
                       "os.truncate", "shutil.rmtree", "sqlite3.connect", "os.utime"):
            bad.append(f"{event} {args}")

    sys.addaudithook(hook)
    sys.argv = ["plantstage", "verify", run, *rest]
    from plantstage.cli import main
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    print("WRITES:", bad, file=sys.stderr)
    sys.exit(code if not bad else 99)
""")


def test_verify_on_a_read_only_copy_writes_nothing(copy_run, tmp_path, auditor, owner):
    import subprocess

    run = copy_run()
    before = _tree_digest(run)
    for p in [run, *run.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        for extra in ([], ["--key", str(owner["pub"])]):
            r = subprocess.run([sys.executable, "-c", AUDIT, str(run), *extra],
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, **auditor, "COLUMNS": "200"})
            # Any write, rename, chmod or database connection would exit 99.
            assert r.returncode == (0 if extra else 4), r.stdout + r.stderr
            assert "WRITES: []" in r.stderr
    finally:
        for p in [run, *run.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert _tree_digest(run) == before


def _forge(run: Path, verdict: str) -> str:
    """Edit the verdict, then rebuild the log and sign it with a fresh key (a forger's)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from plantstage.evidence import chain

    ev = json.loads((run / "evidence.json").read_text())
    ev["verdict"] = verdict
    (run / "evidence.json").write_text(json.dumps(ev, indent=2))
    (run / chain.CHAIN).unlink()
    (run / chain.SIGNATURE).unlink()
    chain.append(run, "rehearsal", {"verdict": verdict}, key=Ed25519PrivateKey.generate())
    return verdict


def test_a_re_signed_forgery_is_refused_when_a_key_is_pinned(copy_run, owner, auditor,
                                                             tmp_path):
    from plantstage.evidence import signing

    run = copy_run()
    _forge(run, "NO-GO")
    # Without a pinned key it is intact, and verify says its signer is not trusted.
    r = run_cli("verify", str(run), env=auditor)
    assert r.returncode == 4 and "signer not trusted" in r.stderr
    # Pinned by --key, by the environment (base64), or by the project the run lives in.
    r = run_cli("verify", str(run), "--key", str(owner["pub"]), env=auditor)
    assert r.returncode == 1 and "not a trusted key" in r.stderr, r.stderr
    b64 = signing.public_b64(owner["pub"].read_text())
    r = run_cli("verify", str(run), env={**auditor, "PLANTSTAGE_TRUSTED_KEYS": b64})
    assert r.returncode == 1 and "not a trusted key" in r.stderr
    project = tmp_path / "project"
    (project / ".plantstage" / "runs").mkdir(parents=True)
    placed = project / ".plantstage" / "runs" / "forged"
    shutil.copytree(run, placed)
    (project / ".plantstage" / "trusted_keys").write_text(f"# the release board\n{b64}\n")
    r = run_cli("verify", str(placed), env=auditor)
    assert r.returncode == 1 and "not a trusted key" in r.stderr
    # The owner's gate and signoff refuse it too (the project pins the owner's key).
    r = run_cli("gate", str(placed), env=owner["env"])
    assert r.returncode == 2 and "does not verify" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_project_spec_pins_keys(copy_run, owner, auditor, tmp_path):
    project = tmp_path / "project"
    (project / ".plantstage" / "runs").mkdir(parents=True)
    placed = project / ".plantstage" / "runs" / "r1"
    shutil.copytree(copy_run(), placed)
    shutil.copy(owner["pub"], project / "board.pub.pem")
    text = (placed / "spec.yaml").read_text()
    (project / "plantstage.yaml").write_text(
        text + "\nevidence:\n  trusted_keys: [board.pub.pem]\n")
    r = run_cli("verify", str(placed), env=auditor)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "evidence.trusted_keys[0]" in r.stdout
    # The copy of the spec inside a bundle is not trusted for this (a forger writes it).
    (project / "plantstage.yaml").unlink()
    r = run_cli("verify", str(placed), env=auditor)
    assert r.returncode == 4


FILES = ["evidence.json", "report.html", "junit.xml", "ledger.sqlite", "signals.sqlite",
         "spec.yaml", "logs/upgrade-upgrade-migrations.log"]


def test_any_edited_file_is_named(copy_run, owner):
    run = copy_run()
    for name in FILES:  # one byte each, in the middle of the file
        _flip(run / name, at=len((run / name).read_bytes()) // 2)
    r = run_cli("verify", str(run), "--key", str(owner["pub"]), env=owner["env"])
    assert r.returncode == 1
    for name in FILES:
        assert f"{name}: edited after signing" in r.stderr, r.stderr
    # A tampered bundle is never re-signed by the other verbs.
    r = run_cli("gate", str(run), env=owner["env"])
    assert r.returncode == 2 and "does not verify" in r.stderr


def test_edited_log_signature_added_and_removed_files(copy_run, owner, tmp_path):
    env = owner["env"]
    run = copy_run("a")
    text = (run / "chain.jsonl").read_text().replace('"rehearsal"', '"rehearsaL"')
    (run / "chain.jsonl").write_text(text)
    r = run_cli("verify", str(run), env=env)
    assert r.returncode == 1 and "chain.jsonl:1" in r.stderr
    run = copy_run("b")
    (run / "extra.txt").write_text("added")
    (run / "extra-shm").write_text("no suffix is skipped")
    (run / "signals.sqlite-shm").write_bytes(b"\0" * 32)
    os.symlink(run / "evidence.json", run / "logs" / "link.json")
    (run / "junit.xml").unlink()
    r = run_cli("verify", str(run), env=env)
    assert r.returncode == 1
    for added in ("extra.txt", "extra-shm", "signals.sqlite-shm", "logs/link.json"):
        assert f"{added}: added after signing" in r.stderr, r.stderr
    assert "logs/link.json: a symbolic link" in r.stderr
    assert "junit.xml: missing" in r.stderr
    run = copy_run("c")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other-key.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = run_cli("verify", str(run), "--key", str(other), env=env)
    assert r.returncode == 1 and "not a trusted key" in r.stderr


def test_bad_input_is_one_line_never_a_traceback(copy_run, owner, tmp_path):
    run = copy_run()
    data = bytearray((run / "chain.jsonl").read_bytes())
    data[3] = 0xFF  # no longer UTF-8
    (run / "chain.jsonl").write_bytes(bytes(data))
    r = run_cli("verify", str(run), env=owner["env"])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "chain.jsonl:1: not a log entry (edited)" in r.stderr
    (tmp_path / "not.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n"
                                      "-----END PUBLIC KEY-----\n")
    (tmp_path / "priv.pem").write_bytes((Path(owner["env"]["PLANTSTAGE_KEY_DIR"])
                                         / "signing-key.pem").read_bytes())
    for key in ("not.pem", "priv.pem"):
        r = run_cli("verify", str(run), "--key", str(tmp_path / key), env=owner["env"])
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "private key" in r.stderr


def test_a_killed_run_is_named_by_gate_and_verify(tmp_path):
    import signal
    import subprocess

    run = tmp_path / "run"
    run.mkdir()
    code = ("import os, signal, pathlib\n"
            "from plantstage.evidence.ledger import Ledger\n"
            f"led = Ledger(pathlib.Path({str(run / 'ledger.sqlite')!r}), 'killed-run')\n"
            "led.start_run('s', 'r'); led.step_started(0, 'load')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    r = run_cli("gate", str(run))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "killed-run was interrupted and never finished" in r.stderr
    r = run_cli("verify", str(run))
    assert r.returncode == 1 and "interrupted and never finished" in r.stderr
    assert "never sealed" in r.stderr
