"""The run's append-only, hash-chained log (``chain.jsonl``) and its signature (``chain.sig``).

Each line is one event — the rehearsal's end, a re-judgement, a signoff — with
the SHA-256 of every file in the run folder at that moment, the previous entry's hash and its
own hash (over the canonical JSON of everything else). ``chain.sig`` holds the Ed25519
signature of the last entry's hash and the public key. So:

* an edited file no longer matches the last entry's manifest → named;
* an edited, removed or reordered log line breaks the hash chain → named (``chain.jsonl:N``);
* a rewritten chain no longer matches the signature, unless re-signed with a key — which is why
  the key's fingerprint is recorded in every entry and a verifier pins the keys it trusts
  (``verify --key``, ``PLANTSTAGE_TRUSTED_KEYS``, the project's ``evidence.trusted_keys``).

Every entry in the folder is covered, whatever its name: regular files by content, symbolic links
by their target (and always named by ``verify``: a bundle holds regular files only), anything
else (a FIFO, a socket …) is named. SQLite databases are sealed (rollback-journal mode, log
folded in) before the first hash, so reading them later leaves no ``-wal``/``-shm`` file; one that
appears anyway is an addition like any other. Names that are not UTF-8 or hold control
characters or backslashes are written with ``\\xNN`` escapes, so every name has one spelling.

Reading never writes: :func:`verify` opens files read-only and works on a read-only copy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantstage.evidence import signing

CHAIN = "chain.jsonl"
SIGNATURE = "chain.sig"
_SKIP = {CHAIN, SIGNATURE}


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def entry_name(rel: str) -> str:
    """One unambiguous, printable spelling of a relative path (``\\xNN`` escapes)."""
    raw = os.fsencode(rel)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0 or o in (0x2028, 0x2029):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _scan(run_dir: Path) -> tuple[dict[str, str], list[str]]:
    """``name → digest`` of every entry in the bundle (but the log and signature), and the
    names of entries that are not regular files (symbolic links, FIFOs, sockets …)."""
    out: dict[str, str] = {}
    irregular: list[str] = []
    root = os.fspath(run_dir)

    def unlistable(exc: OSError) -> None:
        if exc.filename and os.path.normpath(exc.filename) != os.path.normpath(root):
            rel = os.path.relpath(exc.filename, root).replace(os.sep, "/")
            irregular.append(f"{entry_name(rel)}: cannot be listed ({exc.strerror})")

    for top, dirs, files in os.walk(root, followlinks=False, onerror=unlistable):
        for name in [*dirs, *files]:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in _SKIP:
                continue
            key = entry_name(rel)
            try:
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    target = os.fsencode(os.readlink(full))
                    out[key] = "symlink:" + hashlib.sha256(target).hexdigest()
                    irregular.append(f"{key}: a symbolic link (a bundle holds regular files "
                                     "only)")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    continue
                if stat.S_ISREG(st.st_mode):
                    out[key] = file_sha256(Path(full))
                    continue
            except OSError as exc:
                out[key] = f"unreadable:{exc.errno}"
                irregular.append(f"{key}: cannot be read ({exc.strerror})")
                continue
            out[key] = "special:" + stat.filemode(st.st_mode)[0]  # FIFO, socket, device
            irregular.append(f"{key}: not a regular file ({stat.filemode(st.st_mode)})")
    return dict(sorted(out.items())), irregular


def manifest(run_dir: Path) -> dict[str, str]:
    """``name → sha256`` of every entry in the bundle (but the log and signature)."""
    return _scan(run_dir)[0]


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items()
                                      if k not in ("hash", "_noncanonical")})).hexdigest()


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str)


def _sig_text(sig: dict[str, Any]) -> str:
    return json.dumps(sig, indent=2) + "\n"


def read_entries(run_dir: Path) -> list[dict[str, Any]]:
    """The log's entries; a line that is not one (edited) reads as ``{"_unparsable": N}``, a
    valid entry written differently from how plantstage writes it carries ``_noncanonical``."""
    path = run_dir / CHAIN
    try:
        data = path.read_bytes()
    except OSError:
        return []
    entries: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8")
            e = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            entries.append({"_unparsable": n})
            continue
        if not isinstance(e, dict) or "_unparsable" in e or "_noncanonical" in e:
            entries.append({"_unparsable": n})
            continue
        if _line(e) != text:
            e = {**e, "_noncanonical": n}
        entries.append(e)
    if data and not data.endswith(b"\n") and entries and "_unparsable" not in entries[-1]:
        entries[-1] = {**entries[-1], "_noncanonical": len(entries)}  # the end was cut
    return entries


def append(run_dir: Path, kind: str, data: dict[str, Any], *, key=None) -> dict[str, Any]:
    """Add one event with the current manifest, then re-sign the head of the chain."""
    key = key or signing.load_signing_key()
    pub = signing.public_pem(key)
    entries = read_entries(run_dir)
    prev = entries[-1].get("hash", "0" * 64) if entries else "0" * 64
    entry = {"seq": len(entries), "at": time.time(), "kind": kind, "data": data,
             "key": signing.fingerprint(pub), "files": manifest(run_dir), "prev": prev}
    entry["hash"] = entry_hash(entry)
    with (run_dir / CHAIN).open("a", encoding="utf-8") as f:
        f.write(_line(entry) + "\n")
    sig = {"head": entry["hash"], "seq": entry["seq"], "public_key": pub,
           "fingerprint": signing.fingerprint(pub),
           "signature": signing.sign(key, entry["hash"].encode())}
    (run_dir / SIGNATURE).write_text(_sig_text(sig))
    return entry


def signer(run_dir: Path) -> tuple[str | None, bytes | None]:
    """(fingerprint, raw public key) of the key ``chain.sig`` says signed the bundle."""
    try:
        sig = json.loads((run_dir / SIGNATURE).read_bytes().decode("utf-8"))
        raw = signing.raw_public(str(sig["public_key"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None, None
    return signing.fingerprint_raw(raw), raw


@dataclass
class Verification:
    ok: bool
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    fingerprint: str | None = None
    files: int = 0
    #: True: signed by a pinned key; False: a key was pinned, the signer is not one of them;
    #: None: no key pinned — integrity only, the signer is not trusted.
    trusted: bool | None = None
    trusted_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "entries": self.entries,
                "fingerprint": self.fingerprint, "files": self.files, "trusted": self.trusted,
                "trusted_by": self.trusted_by}


def _check_entries(entries: list[dict[str, Any]], problems: list[str]) -> None:
    prev: str | None = "0" * 64
    for n, e in enumerate(entries, 1):
        if "_unparsable" in e:
            problems.append(f"{CHAIN}:{n}: not a log entry (edited)")
            prev = None
            continue
        if "_noncanonical" in e:
            problems.append(f"{CHAIN}:{n}: not written as plantstage writes it (edited)")
        if e.get("hash") != entry_hash(e):
            problems.append(f"{CHAIN}:{n}: entry '{str(e.get('kind'))[:40]}' was edited "
                            "(hash mismatch)")
        if prev is not None and e.get("prev") != prev:
            problems.append(f"{CHAIN}:{n}: chain broken (previous entry removed, reordered "
                            "or edited)")
        if e.get("seq") != n - 1:
            problems.append(f"{CHAIN}:{n}: sequence number {str(e.get('seq'))[:20]} "
                            f"(expected {n - 1})")
        h = e.get("hash")
        prev = h if isinstance(h, str) else None


def _check_signature(run_dir: Path, entries: list[dict[str, Any]], head: dict[str, Any],
                     problems: list[str]) -> tuple[str | None, bytes | None]:
    try:
        text = (run_dir / SIGNATURE).read_bytes().decode("utf-8")
        sig = json.loads(text)
        if not isinstance(sig, dict):
            raise ValueError
    except (OSError, ValueError, RecursionError):
        problems.append(f"{SIGNATURE}: missing or unreadable")
        return None, None
    pub = sig.get("public_key")
    try:
        raw = signing.raw_public(pub if isinstance(pub, str) else "")
    except ValueError:
        problems.append(f"{SIGNATURE}: the public key is not readable")
        return None, None
    fp = signing.fingerprint_raw(raw)
    try:  # byte for byte as plantstage writes it: no second spelling of the same content
        canonical = {"head": sig.get("head"), "seq": sig.get("seq"),
                     "public_key": signing.pem_of_raw(raw), "fingerprint": sig.get("fingerprint"),
                     "signature": base64.b64encode(base64.b64decode(
                         str(sig.get("signature", "")), validate=True)).decode()}
        same = _sig_text(canonical) == text
    except (ValueError, binascii.Error):
        same = False
    if not same:
        problems.append(f"{SIGNATURE}: not written as plantstage writes it (edited)")
    if sig.get("fingerprint") != fp:
        problems.append(f"{SIGNATURE}: fingerprint does not match its public key")
    if sig.get("head") != head.get("hash") or sig.get("seq") != head.get("seq"):
        problems.append(f"{SIGNATURE}: signs entry {str(sig.get('seq'))[:20]}, but the log ends "
                        f"at entry {str(head.get('seq'))[:20]} ({CHAIN} or {SIGNATURE} edited)")
    elif not signing.verify_signature(str(pub), str(sig.get("signature", "")),
                                      str(head.get("hash")).encode()):
        problems.append(f"{SIGNATURE}: the Ed25519 signature does not verify")
    keys = {str(e.get("key")) for e in entries if "_unparsable" not in e}
    if keys - {fp}:
        problems.append(f"{CHAIN}: entries were signed with other keys "
                        f"({', '.join(sorted(k[:40] for k in keys - {fp}))})")
    return fp, raw


def verify(run_dir: Path, *, trusted: list[signing.TrustedKey] | None = None,
           trusted_public_key: str | None = None) -> Verification:
    """Check the chain, the signature, every file and (if keys are pinned) the signer; name
    whatever does not match. Reads only."""
    if trusted_public_key is not None:
        trusted = [*(trusted or []), signing.parse_public_key(trusted_public_key,
                                                              where="trusted key")]
    problems: list[str] = []
    entries = read_entries(run_dir)
    if not entries:
        return Verification(False, [f"{CHAIN}: missing or empty — this run was never sealed"])
    _check_entries(entries, problems)
    head = entries[-1]
    fp, raw = _check_signature(run_dir, entries, head, problems)
    is_trusted: bool | None = None
    by = None
    if trusted:
        match = next((k for k in trusted if raw is not None and k.raw == raw), None)
        is_trusted = match is not None
        if match is None:
            pinned = ", ".join(sorted({k.fingerprint for k in trusted}))
            problems.append(f"{SIGNATURE}: signed with key {fp or 'unknown'}, not a trusted key "
                            f"({pinned})")
        else:
            by = match.source
    recorded = head.get("files")
    now, irregular = _scan(run_dir)
    problems.extend(irregular)
    if "_unparsable" in head or not isinstance(recorded, dict):
        problems.append(f"{CHAIN}:{len(entries)}: the last entry holds no file list; files "
                        "cannot be checked")
        recorded = {}
    else:
        for rel in sorted(set(recorded) | set(now)):
            shown = rel if rel in now else "".join(  # a recorded name: printable, one line
                f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in str(rel))
            if rel not in now:
                problems.append(f"{shown}: missing (removed after signing)")
            elif rel not in recorded:
                problems.append(f"{shown}: added after signing")
            elif now[rel] != recorded[rel]:
                problems.append(f"{shown}: edited after signing (sha256 differs)")
    return Verification(not problems, problems, len(entries), fp, len(recorded), is_trusted, by)
