"""CLI verbs of the readiness decision: gate, signoff, verify (registered on the main app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from plantstage.cli_support import console, err, name_param, path_param, pem_file_param
from plantstage.errors import (
    EXIT_GO,
    EXIT_INCONCLUSIVE,
    EXIT_NO_GO,
    EXIT_PENDING,
    EXIT_UNTRUSTED,
)

#: This module's commands; plantstage.cli registers them on the main app.
app = typer.Typer()

_STYLE = {"GO": "bold white on green", "NO-GO": "bold white on red",
          "PENDING": "bold black on yellow", "INCONCLUSIVE": "bold black on yellow"}
_CODES = {"GO": EXIT_GO, "NO-GO": EXIT_NO_GO, "PENDING": EXIT_PENDING,
          "INCONCLUSIVE": EXIT_INCONCLUSIVE}
_OUTCOME = {"pass": "green", "warn": "yellow", "waived": "yellow", "fail": "red",
            "inconclusive": "yellow"}


def _show(evidence: dict, run: Path) -> None:
    t = Table(box=None, pad_edge=False)
    for col in ("gate", "outcome", "value", "threshold"):
        t.add_column(col)
    for g in evidence["gates"]:
        v = "—" if g["value"] is None else f"{g['value']:.4g}"
        t.add_row(g["name"] + ("" if g.get("key") else " (non-key)"),
                  Text(g["outcome"], style=_OUTCOME.get(g["outcome"], "")), v,
                  g["threshold"] or "")
    console.print(t)
    for g in evidence["gates"]:
        if g.get("decision"):
            console.print(f"  {g['name']}: {g['decision']}", soft_wrap=True)
    sc = evidence.get("score") or {}
    if sc.get("pct") is not None:
        console.print(f"score {sc['pct']}% ({sc['result']}; pass ≥ {sc['pass_pct']:g}%, "
                      f"warning ≥ {sc['warning_pct']:g}%)")
    for r in evidence.get("signoffs", []):
        who = ", ".join(a["by"] for a in r["approvals"]) or "—"
        console.print(f"signoff {r['role']}: {r['state']} ({len(r['approvals'])}/{r['quorum']};"
                      f" {who})")
    verdict = evidence["verdict"]
    console.print(Text(f" {verdict} ", style=_STYLE.get(verdict, "")),
                  f"{evidence['spec']['name']} {evidence['release']['name']}")
    for r in evidence.get("reasons", []):
        console.print(f"  • {r}", soft_wrap=True)
    console.print(f"  report: {run / 'report.html'}")


@app.command()
def gate(
    run: Annotated[Path, typer.Argument(help="Run folder.", callback=path_param)],
    spec: Annotated[Path | None, typer.Option(
        help="Judge with this spec's gates and signoffs instead of the run's own.",
        callback=path_param)] = None,
):
    """Re-judge a recorded run without rerunning it.

    Exit 0 GO, 1 NO-GO, 3 PENDING, 5 INCONCLUSIVE, 2 bad input.
    """
    from plantstage.evidence.verbs import gate as _gate

    evidence = _gate(run, spec=spec)
    _show(evidence, run)
    raise typer.Exit(_CODES[evidence["verdict"]])


@app.command()
def signoff(
    run: Annotated[Path, typer.Argument(help="Run folder.", callback=path_param)],
    role: Annotated[str, typer.Option(help="A role the spec's signoffs declare.",
                                       callback=name_param)],
    by: Annotated[str, typer.Option(help="Who signs off.", callback=name_param)],
    decision: Annotated[str, typer.Option(help="approve or reject.")],
    reason: Annotated[str, typer.Option(help="Why.")],
    waive: Annotated[str | None, typer.Option(help="Waive this failing non-key gate.")] = None,
    expires: Annotated[str | None, typer.Option(help="Waiver expiry date, YYYY-MM-DD.")] = None,
):
    """Record a signoff (and optionally a waiver). Exit code: the verdict after it (0/1/3)."""
    from plantstage.evidence.verbs import signoff as _signoff

    evidence = _signoff(run, role=role, by=by, decision=decision, reason=reason, waive=waive,
                        expires=expires)
    _show(evidence, run)
    raise typer.Exit(_CODES[evidence["verdict"]])


@app.command()
def verify(
    run: Annotated[Path, typer.Argument(help="Run folder.", callback=path_param)],
    key: Annotated[Path | None, typer.Option(
        help="Trusted public key (PEM); the bundle must be signed with it.",
        callback=pem_file_param)] = None,
):
    """Check a run's hash chain, signature, files and signer; read-only (never writes or signs).

    Exit 0 intact and signed by a pinned key, 4 intact but no key pinned (integrity only),
    1 tampered or signed by a key that is not pinned, 2 bad input.
    """
    from plantstage.evidence.verbs import verify as _verify

    v = _verify(run, key=key)
    if v.ok and v.trusted:
        console.print(Text(f"✔ {run}: {v.files} files, {v.entries} log entries, signed by "
                           f"trusted key {v.fingerprint} ({v.trusted_by})"), soft_wrap=True)
        raise typer.Exit(0)
    if v.ok:
        console.print(Text(f"✔ {run}: {v.files} files, {v.entries} log entries intact, signed "
                           f"by key {v.fingerprint}"), soft_wrap=True)
        err.print(Text("! integrity only, signer not trusted: no trusted key is pinned (hint: "
                       "--key PUB.pem, PLANTSTAGE_TRUSTED_KEYS, or evidence.trusted_keys in the "
                       "project's plantstage.yaml)", style="yellow"), soft_wrap=True)
        raise typer.Exit(EXIT_UNTRUSTED)
    for p in v.problems:
        err.print(Text(f"✘ {p}", style="red"), soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def keys(
    action: Annotated[str, typer.Argument(help="init: make the evidence signing key if there "
                                          "is none, and show it.")],
):
    """Make (init) the Ed25519 key evidence is signed with; print where it is and its public key.

    Idempotent: an existing key is shown, never replaced. Verifiers pin the public key.
    """
    from plantstage.errors import SpecError
    from plantstage.evidence.verbs import keys_init

    if action != "init":
        raise SpecError(f"unknown keys action '{action[:40]}'", where="plantstage keys",
                        hint="plantstage keys init")
    info = keys_init()
    what = "made a new" if info.created else "already have an"
    console.print(Text(f"plantstage: {what} Ed25519 evidence signing key: {info.path}"),
                  soft_wrap=True)
    console.print(f"fingerprint: {info.fingerprint}")
    if info.public_path is not None:
        console.print(Text(f"public key:  {info.public_path}"), soft_wrap=True)
    console.print(f"public key (base64): {info.base64}")
    console.print("pin it where bundles are verified: verify --key PUB.pem, "
                  "PLANTSTAGE_TRUSTED_KEYS, or evidence.trusted_keys in plantstage.yaml",
                  soft_wrap=True)
