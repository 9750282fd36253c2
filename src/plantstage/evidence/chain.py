"""The run's append-only, hash-chained log (``chain.jsonl``) and its signature (``chain.sig``).

Each line is one event — the rehearsal's end, a re-judgement, a signoff, a verification — with
the SHA-256 of every file in the run folder at that moment, the previous entry's hash and its
own hash (over the canonical JSON of everything else). ``chain.sig`` holds the Ed25519
signature of the last entry's hash and the public key. So:

* an edited file no longer matches the last entry's manifest → named;
* an edited, removed or reordered log line breaks the hash chain → named (``chain.jsonl:N``);
* a rewritten chain no longer matches the signature, unless re-signed with a key — which is why
  the key's fingerprint is recorded in every entry and ``verify --key`` can pin it.

SQLite's ``-shm`` files (shared-memory indexes rebuilt on open) and empty ``-wal`` files that a
read-only reader may leave behind hold no data, so they are left out; a non-empty ``-wal`` is
data and is hashed.
"""

from __future__ import annotations

import hashlib
import json
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


def manifest(run_dir: Path) -> dict[str, str]:
    """``relative path → sha256`` of every file in the bundle (but the log and signature)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        rel = p.relative_to(run_dir).as_posix()
        if rel in _SKIP or rel.endswith("-shm"):
            continue
        if rel.endswith("-wal") and p.stat().st_size == 0:
            continue  # an empty write-ahead log a read-only SQLite reader left: no data
        out[rel] = file_sha256(p)
    return out


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def read_entries(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / CHAIN
    if not path.exists():
        return []
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append({"_unparsable": n})
    return entries


def append(run_dir: Path, kind: str, data: dict[str, Any], *, key=None) -> dict[str, Any]:
    """Add one event with the current manifest, then re-sign the head of the chain."""
    key = key or signing.load_signing_key()
    pub = signing.public_pem(key)
    entries = read_entries(run_dir)
    prev = entries[-1]["hash"] if entries else "0" * 64
    entry = {"seq": len(entries), "at": time.time(), "kind": kind, "data": data,
             "key": signing.fingerprint(pub), "files": manifest(run_dir), "prev": prev}
    entry["hash"] = entry_hash(entry)
    with (run_dir / CHAIN).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str) + "\n")
    sig = {"head": entry["hash"], "seq": entry["seq"], "public_key": pub,
           "fingerprint": signing.fingerprint(pub),
           "signature": signing.sign(key, entry["hash"].encode())}
    (run_dir / SIGNATURE).write_text(json.dumps(sig, indent=2) + "\n")
    return entry


@dataclass
class Verification:
    ok: bool
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    fingerprint: str | None = None
    files: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "entries": self.entries,
                "fingerprint": self.fingerprint, "files": self.files}


def verify(run_dir: Path, *, trusted_public_key: str | None = None) -> Verification:
    """Check the chain, the signature and every file; name whatever does not match."""
    problems: list[str] = []
    entries = read_entries(run_dir)
    if not entries:
        return Verification(False, [f"{CHAIN}: missing or empty — this run was never sealed"])
    prev = "0" * 64
    for n, e in enumerate(entries, 1):
        if "_unparsable" in e:
            problems.append(f"{CHAIN}:{n}: not a log entry (edited)")
            prev = None
            continue
        if e.get("hash") != entry_hash(e):
            problems.append(f"{CHAIN}:{n}: entry '{e.get('kind')}' was edited (hash mismatch)")
        if prev is not None and e.get("prev") != prev:
            problems.append(f"{CHAIN}:{n}: chain broken (previous entry removed, reordered "
                            "or edited)")
        if e.get("seq") != n - 1:
            problems.append(f"{CHAIN}:{n}: sequence number {e.get('seq')} (expected {n - 1})")
        prev = e.get("hash")
    head = entries[-1]
    fp = None
    try:
        sig = json.loads((run_dir / SIGNATURE).read_text())
    except (OSError, ValueError):
        problems.append(f"{SIGNATURE}: missing or unreadable")
        sig = None
    if sig is not None:
        fp = sig.get("fingerprint")
        pub = sig.get("public_key", "")
        if trusted_public_key is not None and pub.strip() != trusted_public_key.strip():
            problems.append(f"{SIGNATURE}: signed with key {fp}, not the trusted key "
                            f"{signing.fingerprint(trusted_public_key)}")
        if sig.get("head") != head.get("hash"):
            problems.append(f"{SIGNATURE}: signs entry {sig.get('seq')}, but the log ends at "
                            f"entry {head.get('seq')} ({CHAIN} or {SIGNATURE} edited)")
        elif not signing.verify_signature(pub, str(sig.get("signature", "")),
                                          str(head.get("hash")).encode()):
            problems.append(f"{SIGNATURE}: the Ed25519 signature does not verify")
        try:
            if signing.fingerprint(pub) != fp:
                problems.append(f"{SIGNATURE}: fingerprint does not match its public key")
            keys = {e.get("key") for e in entries if "_unparsable" not in e}
            if keys - {signing.fingerprint(pub)}:
                problems.append(f"{CHAIN}: entries were signed with other keys "
                                f"({', '.join(sorted(k for k in keys if k))})")
        except ValueError:
            problems.append(f"{SIGNATURE}: the public key is not readable")
    recorded = head.get("files") or {}
    now = manifest(run_dir)
    for rel in sorted(set(recorded) | set(now)):
        if rel not in now:
            problems.append(f"{rel}: missing (removed after signing)")
        elif rel not in recorded:
            problems.append(f"{rel}: added after signing")
        elif now[rel] != recorded[rel]:
            problems.append(f"{rel}: edited after signing (sha256 differs)")
    return Verification(not problems, problems, len(entries), fp, len(recorded))
