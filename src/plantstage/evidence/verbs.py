"""The verbs of the readiness decision as library functions: gate, signoff, verify, keys.

Each works from a run folder only (``evidence.json``, ``signals.sqlite``, ``spec.yaml``,
``chain.jsonl``) and never reruns anything. ``gate`` and ``signoff`` first verify the bundle —
re-signing a tampered bundle would launder the edit — and sign only with the key that signed
the run (and, when keys are pinned, only a bundle a pinned key signed); then re-judge,
re-render ``evidence.json`` / ``report.html`` / ``junit.xml`` and append to the log.
``verify`` only reads: it never writes, signs or makes a key.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from plantstage.errors import PlantstageError, SpecError
from plantstage.evidence import bundle, chain


class EvidenceError(PlantstageError):
    """A run's evidence bundle fails verification (edited, incomplete or unsigned)."""


class InterruptedRunError(PlantstageError):
    """The run folder holds a run whose process died before it finished."""


def _interrupted(p: Path) -> str | None:
    from plantstage.evidence.ledger import interrupted_note

    try:
        return interrupted_note(p)
    except (OSError, ValueError):
        return None


def _is(check, path: Path) -> bool:
    try:
        return bool(check(path))
    except (OSError, ValueError):
        return False


def _run_dir(run: str | Path) -> Path:
    p = Path(run)
    if not (_is(Path.is_file, p / bundle.EVIDENCE) and _is(Path.is_file, p / chain.CHAIN)):
        note = _interrupted(p) if _is(Path.is_dir, p) else None
        if note:
            raise InterruptedRunError(note, where=str(p),
                                      hint="rehearse the release again; there is nothing to "
                                      "judge here")
        if _is(Path.is_file, p / bundle.EVIDENCE):
            raise EvidenceError("this run's evidence was never sealed (no chain.jsonl)",
                                where=str(p), hint="rehearse the release again")
        raise SpecError("no recorded run here", where=str(p)[:300],
                        hint="give a run folder (it holds evidence.json)")
    return p.resolve()


def _require_intact(run_dir: Path) -> None:
    """Refuse a bundle that does not verify, that a pinned key did not sign, or that was
    signed by another key than the one this machine would sign with."""
    from plantstage.evidence import signing

    pinned = signing.trusted_keys(run_dir)
    v = chain.verify(run_dir, trusted=pinned)
    if not v.ok:
        raise EvidenceError(f"the evidence bundle does not verify: {v.problems[0]}",
                            where=str(run_dir),
                            hint="`plantstage verify RUN` lists every problem; nothing was "
                            "changed")
    mine = signing.fingerprint(signing.public_pem(signing.load_signing_key()))
    if mine != v.fingerprint:
        raise EvidenceError(f"this bundle is signed by key {v.fingerprint}, your signing key is "
                            f"{mine}; one log is signed by one key", where=str(run_dir),
                            hint="sign with the key that signed the run (PLANTSTAGE_SIGNING_KEY "
                            "or PLANTSTAGE_KEY_DIR); nothing was changed")


def gate(run: str | Path, *, spec: str | Path | None = None) -> dict[str, Any]:
    """Re-judge a recorded run (optionally with a changed spec's gates); return the evidence."""
    run_dir = _run_dir(run)
    _require_intact(run_dir)
    loaded = None
    if spec is not None:
        from plantstage.gates.catalogue import validate
        from plantstage.spec.loader import load_spec

        loaded = load_spec(spec)
        validate(loaded)
    return bundle.rejudge(
        run_dir, spec=loaded.spec if loaded else None,
        spec_label=str(loaded.path) if loaded else "spec.yaml (as used)",
        spec_text=loaded.text if loaded else None, kind="gate",
        data={"spec": str(loaded.path) if loaded else "spec.yaml"})


def signoff(run: str | Path, *, role: str, by: str, decision: str, reason: str,
            waive: str | None = None, expires: str | None = None) -> dict[str, Any]:
    """Record one person's decision in a role (and optionally a waiver); return the evidence."""
    from plantstage.spec.loader import parse_spec_text

    run_dir = _run_dir(run)
    if decision not in ("approve", "reject"):
        raise SpecError(f"decision '{decision}' is not approve or reject", where="--decision",
                        hint="--decision approve|reject")
    if not by.strip() or not reason.strip():
        raise SpecError("a signoff needs who (--by) and why (--reason)",
                        where="--by" if not by.strip() else "--reason")
    spec_file = bundle.judging_spec_file(run_dir)
    spec = parse_spec_text(spec_file.read_text(encoding="utf-8"), spec_file).spec
    roles = [r.role for r in spec.signoffs]
    if role not in roles:
        raise SpecError(f"no signoff role '{role}' in this run's spec", where="--role",
                        hint=f"roles: {', '.join(roles)}" if roles
                        else "the spec declares no signoffs")
    waiver = None
    if waive is not None or expires is not None:
        waiver = _waiver(run_dir, spec, waive, expires, by, reason, decision)
    _require_intact(run_dir)
    record = {"role": role, "by": by.strip(), "decision": decision, "reason": reason.strip(),
              "at": time.time()}
    if waiver:
        record["waiver"] = waiver
    return bundle.rejudge(run_dir, kind="signoff", data=record)


def _waiver(run_dir: Path, spec, gate_name, expires, by, reason, decision) -> dict[str, Any]:
    from plantstage.gates.judge import effective_gates

    if gate_name is None or expires is None:
        raise SpecError("a waiver needs both --waive GATE and --expires DATE",
                        where="--waive" if gate_name is None else "--expires")
    if decision != "approve":
        raise SpecError("only an approval can waive a gate", where="--waive",
                        hint="use --decision approve")
    try:  # the run's release: its maintenance window implies gates too
        release = json.loads((run_dir / "evidence.json").read_text())["release"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        release = None
    gates = {g.name: g for g in effective_gates(spec, release)}
    if gate_name not in gates:
        raise SpecError(f"no gate '{gate_name}' in this run's spec", where="--waive",
                        hint=f"gates: {', '.join(gates)}")
    if gates[gate_name].key:
        raise SpecError(f"gate '{gate_name}' is a key gate; key gates cannot be waived",
                        where="--waive", hint="only gates with key: false can be waived")
    try:
        until = date.fromisoformat(expires)
    except ValueError:
        raise SpecError(f"'{expires}' is not a date", where="--expires",
                        hint="YYYY-MM-DD") from None
    if until < datetime.now(UTC).date():
        raise SpecError(f"the waiver would already have expired ({expires})",
                        where="--expires", hint="give a date from today on")
    return {"gate": gate_name, "owner": by.strip(), "reason": reason.strip(),
            "expires": until.isoformat(), "at": time.time()}


def verify(run: str | Path, *, key: str | Path | list[str | Path] | None = None,
           record: bool = False) -> chain.Verification:
    """Check the hash chain, the signature, every file and the signer of a run's bundle.

    Strictly read-only: nothing is written, signed or generated, so the bundle stays
    byte-identical and a read-only copy verifies. The signer is trusted only against a pinned
    key: ``key`` (``--key``; replaces the other sources), else ``PLANTSTAGE_TRUSTED_KEYS`` and
    the run's project (``evidence.trusted_keys``, ``.plantstage/trusted_keys``). Without one,
    ``trusted`` is None: integrity only. ``record`` is accepted for compatibility and ignored.
    """
    from plantstage.evidence import signing

    del record
    p = Path(run)
    if not _is(Path.is_dir, p):
        raise SpecError("no run folder here", where=str(p)[:300], hint="give a run folder")
    keys = [key] if isinstance(key, (str, Path)) else list(key or [])
    pinned = signing.trusted_keys(p, explicit=keys)
    v = chain.verify(p.resolve(), trusted=pinned)
    if not _is(Path.is_file, p / chain.CHAIN):
        note = _interrupted(p)
        if note:
            v.problems = [f"{note} ({chain.CHAIN} missing: never sealed)"]
    return v


def keys_init():
    """Make the evidence signing key if there is none (``plantstage keys init``)."""
    from plantstage.evidence import signing

    return signing.init_key()
