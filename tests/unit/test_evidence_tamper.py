"""Tamper detection of a signed bundle, as properties: every one-byte edit, every added entry
(any name, symbolic links included) and every deletion is named by ``verify``; no input makes
``verify`` crash. Real files, real Ed25519 signatures, a real (sealed) SQLite database."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plantstage.engines.sqlite import seal_files
from plantstage.evidence import chain, signing

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=1)
def _template() -> tuple[Path, Ed25519PrivateKey]:
    """A sealed, signed bundle with two log entries (made once, copied per example)."""
    root = Path(tempfile.mkdtemp(prefix="ps-bundle-"))
    run = root / "run"
    (run / "logs").mkdir(parents=True)
    (run / "evidence.json").write_text(json.dumps({"verdict": "GO", "note": "é → ≤"}))
    (run / "report.html").write_text("<!doctype html><p>GO</p>\n")
    (run / "logs" / "migrations.log").write_text("upgrade 1 → 2\n" * 20)
    (run / "spec.yaml").write_text("name: plant\n")
    db = sqlite3.connect(run / "signals.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE s(name TEXT, value REAL)")
    db.executemany("INSERT INTO s VALUES (?, ?)", [(f"x{i}", i) for i in range(50)])
    db.commit()
    db.close()
    seal_files(run)
    key = Ed25519PrivateKey.generate()
    chain.append(run, "rehearsal", {"verdict": "GO"}, key=key)
    chain.append(run, "signoff", {"role": "qa", "by": "Ada"}, key=key)
    assert chain.verify(run).ok
    return run, key


_COPIES: list[Path] = []


def _copy() -> Path:
    """A private copy of the template bundle (the previous example's copy is removed)."""
    while _COPIES:
        shutil.rmtree(_COPIES.pop(), ignore_errors=True)
    src, _ = _template()
    dst = Path(tempfile.mkdtemp(prefix="ps-case-")) / "run"
    _COPIES.append(dst.parent)
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture(autouse=True, scope="module")
def _cleanup():
    yield
    while _COPIES:
        shutil.rmtree(_COPIES.pop(), ignore_errors=True)
    shutil.rmtree(_template()[0].parent, ignore_errors=True)
    _template.cache_clear()


def _files(run: Path) -> list[str]:
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())


def _named(problems: list[str], name: str) -> bool:
    return any(p.startswith(name + ":") or p.startswith(name + " ") for p in problems)


FILES = _files(_template()[0])


@SETTINGS
@given(which=st.sampled_from(FILES), where=st.floats(0, 1, exclude_max=True),
       new=st.integers(0, 255))
def test_every_one_byte_edit_is_named(which, where, new):
    run = _copy()
    path = run / which
    data = bytearray(path.read_bytes())
    at = int(where * len(data))
    assume(data[at] != new)
    data[at] = new
    path.write_bytes(bytes(data))
    v = chain.verify(run)
    assert not v.ok
    assert _named(v.problems, which) or (which == chain.CHAIN and _named(v.problems,
                                                                         chain.SIGNATURE)), \
        (which, at, new, v.problems)


def test_every_byte_of_every_file_edited_in_turn_is_named():
    """Exhaustive on the log and signature (the files an attacker re-forms)."""
    for which in (chain.CHAIN, chain.SIGNATURE):
        run = _copy()
        path = run / which
        orig = path.read_bytes()
        for at in range(len(orig)):
            data = bytearray(orig)
            data[at] ^= 0x01 if at % 2 else 0x20
            path.write_bytes(bytes(data))
            v = chain.verify(run)
            assert not v.ok and (_named(v.problems, which) or _named(v.problems,
                                                                     chain.SIGNATURE)), \
                (which, at, v.problems)
        path.write_bytes(orig)
        assert chain.verify(run).ok


_name_chars = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
NAMES = st.one_of(
    st.text(_name_chars, min_size=1, max_size=40),
    st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\x00" not in b)
    .map(os.fsdecode),
    st.sampled_from(["extra-shm", "signals.sqlite-shm", "signals.sqlite-wal", "ledger.sqlite",
                     ".hidden", "chain.jsonl.bak", "a\\x41", "a\\\\x41", "-wal", "x\ny"]),
)


@SETTINGS
@given(name=NAMES, folder=st.sampled_from(["", "logs/"]),
       kind=st.sampled_from(["file", "empty", "symlink-file", "symlink-dangling",
                             "symlink-dir"]))
def test_every_addition_is_named(name, folder, kind):
    assume(name not in (".", "..") and len(os.fsencode(name)) <= 200)
    run = _copy()
    rel = folder + name
    target = run / rel
    assume(not os.path.lexists(target))
    if kind == "file":
        target.write_bytes(b"planted")
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "symlink-file":
        os.symlink(run / "evidence.json", target)
    elif kind == "symlink-dangling":
        os.symlink("/nonexistent/x", target)
    else:
        os.symlink(run / "logs", target)
    v = chain.verify(run)
    shown = chain.entry_name(rel)
    assert not v.ok
    assert _named(v.problems, shown), (rel, v.problems)
    assert all("\n" not in p for p in v.problems)  # one line each, whatever the name


@SETTINGS
@given(which=st.sampled_from(FILES))
def test_every_deletion_is_named(which):
    run = _copy()
    (run / which).unlink()
    v = chain.verify(run)
    assert not v.ok and _named(v.problems, which), v.problems


def test_a_symlink_recorded_at_signing_is_still_named(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "a.txt").write_text("a")
    os.symlink("a.txt", run / "link")
    chain.append(run, "rehearsal", {}, key=Ed25519PrivateKey.generate())
    v = chain.verify(run)
    assert not v.ok and v.problems == ["link: a symbolic link (a bundle holds regular files only)"]


def test_sqlite_side_files_are_treated_precisely():
    """A sealed database read by anyone leaves nothing; a real -wal is an addition."""
    run = _copy()
    ro = sqlite3.connect(f"file:{run / 'signals.sqlite'}?mode=ro", uri=True)
    assert ro.execute("SELECT COUNT(*) FROM s").fetchone()[0] == 50
    ro.close()
    rw = sqlite3.connect(run / "signals.sqlite")  # even a read-write reader
    rw.execute("SELECT COUNT(*) FROM s").fetchone()
    rw.close()
    assert chain.verify(run).ok, chain.verify(run).problems
    db = sqlite3.connect(run / "signals.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO s VALUES ('planted', 1)")
    db.commit()
    v = chain.verify(run)
    db.close()
    assert not v.ok and _named(v.problems, "signals.sqlite"), v.problems


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from([chain.CHAIN, chain.SIGNATURE]), data=st.binary(max_size=600))
def test_verify_never_crashes_on_garbage_log_or_signature(which, data):
    run = _copy()
    (run / which).write_bytes(data)
    v = chain.verify(run)
    assert not v.ok and v.problems


@settings(max_examples=150, deadline=None)
@given(line=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                         lambda c: st.lists(c, max_size=3) | st.dictionaries(
                             st.sampled_from(["seq", "hash", "files", "key", "prev", "kind",
                                              "_unparsable"]), c, max_size=4)))
def test_verify_never_crashes_on_log_lines_of_any_json_shape(line):
    run = _copy()
    with (run / chain.CHAIN).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    v = chain.verify(run)
    assert not v.ok


def test_invalid_utf8_log_is_named_not_a_crash():
    run = _copy()
    data = bytearray((run / chain.CHAIN).read_bytes())
    data[5] = 0xFF
    (run / chain.CHAIN).write_bytes(bytes(data))
    v = chain.verify(run)
    assert not v.ok and "chain.jsonl:1: not a log entry (edited)" in v.problems


def test_signer_public_key_pinning():
    run = _copy()
    _, key = _template()
    mine = signing.TrustedKey(signing.raw_public(signing.public_pem(key)), "test")
    other = signing.TrustedKey(signing.raw_public(signing.public_pem(
        Ed25519PrivateKey.generate())), "other")
    assert chain.verify(run).trusted is None
    assert chain.verify(run, trusted=[other, mine]).trusted is True
    v = chain.verify(run, trusted=[other])
    assert not v.ok and v.trusted is False and "not a trusted key" in v.problems[0]


def test_a_fifo_or_a_looping_link_is_named_not_a_hang_or_a_crash():
    run = _copy()
    os.mkfifo(run / "logs" / "pipe")
    v = chain.verify(run)  # never opens the FIFO (that would block)
    assert any(p.startswith("logs/pipe: not a regular file") for p in v.problems), v.problems
    assert "logs/pipe: added after signing" in v.problems
    os.unlink(run / "logs" / "pipe")
    looped = run / "logs" / "migrations.log"
    os.unlink(looped)
    os.symlink(looped, looped)  # a link to itself
    v = chain.verify(run)
    assert not v.ok and _named(v.problems, "logs/migrations.log")


def test_databases_in_sub_folders_are_sealed_before_the_first_hash(tmp_path):
    from plantstage.evidence.bundle import seal_databases

    run = tmp_path / "run"
    (run / "parity" / "staging").mkdir(parents=True)
    path = run / "parity" / "staging" / "schema.db"  # found by its header, not its name
    keep = sqlite3.connect(path)
    keep.execute("PRAGMA journal_mode=WAL")
    keep.execute("CREATE TABLE t(x)")
    keep.execute("INSERT INTO t VALUES (1)")
    keep.commit()
    other = sqlite3.connect(path)  # a second connection keeps -wal/-shm on disk
    other.execute("SELECT * FROM t").fetchall()
    keep.close()
    assert (run / "parity" / "staging" / "schema.db-wal").exists()
    other.close()
    (run / "notes.sqlite").write_bytes(b"not a database")
    assert seal_databases(run) == ["parity/staging/schema.db"]
    assert not (run / "parity" / "staging" / "schema.db-wal").exists()
    assert path.read_bytes()[18:20] == b"\x01\x01"  # rollback-journal mode from now on
    chain.append(run, "rehearsal", {}, key=Ed25519PrivateKey.generate())
    db = sqlite3.connect(path)  # someone inspects it later
    assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
    db.close()
    assert chain.verify(run).ok, chain.verify(run).problems
