"""The sample plant's defective releases, each rehearsed through the CLI as a user would, and
each caught by the capability meant for it: the gate that names the defect fails (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, PG_URL, requires_postgres, run_cli, sample_plant_copy


def _rehearse(out: Path, release: str, *extra: str, spec: Path = EXAMPLE) -> dict:
    r = run_cli("rehearse", str(spec), "--release", release, "--out", str(out), *extra)
    assert r.returncode == 1, r.stdout + r.stderr
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["verdict"] == "NO-GO"
    return ev


def _failed(ev: dict) -> dict[str, dict]:
    return {g["name"]: g for g in ev["gates"] if g["outcome"] == "fail"}


def _reasons(ev: dict) -> str:
    return "\n".join(map(str, ev.get("reasons") or []))


def test_retry_storm_is_caught_by_call_amplification(tmp_path, production_db):
    ev = _rehearse(tmp_path / "run", "1.1.0-retry-storm")
    failed = _failed(ev)
    assert "wms-calls-per-transaction" in failed, ev["gates"]
    assert "wms-calls-per-transaction" in _reasons(ev)
    sig = ev["signals"]
    # Every version met the same WMS outage; only the new one multiplied its calls.
    assert sig["twins.wms.candidate.requests"] > 3 * sig["twins.wms.candidate.movements"]
    assert sig["twins.wms.baseline.requests"] < 2 * sig["twins.wms.baseline.movements"]


def test_renamed_column_breaks_the_old_version_in_the_paired_phase(tmp_path, production_db):
    ev = _rehearse(tmp_path / "run", "1.1.0-renames-column")
    assert "old-version-on-new-schema" in _failed(ev), ev["gates"]
    assert "old-version-on-new-schema" in _reasons(ev)
    sig = ev["signals"]
    assert sig["workload.paired.old.error_rate"] > 0.01
    # The new version maps the column: none of its requests fail. (Its MQTT confirmations can:
    # in the paired phase both versions' consumers share the subscription.)
    assert sig.get("workload.paired.new.errors.http_500", 0) == 0
    # The downgrade renames it back: nothing lost on rollback, and the drill says so per column.
    assert sig["rollback.columns_lost"] == 0 and sig["rollback.values_lost"] == 0


def test_lost_at_switch_is_caught_by_the_effects_check(tmp_path, production_db):
    ev = _rehearse(tmp_path / "run", "1.1.0-lost-at-switch")
    assert "effect-mes-confirmations-posted" in _failed(ev), ev["gates"]
    assert "effect-mes-confirmations-posted" in _reasons(ev)
    # The MES saw them acknowledged as posted; the ledger never got them.
    assert ev["signals"]["effects.mes-confirmations-posted.lost"] > 0
    assert ev["signals"]["effects.mes-confirmations-posted.duplicated"] == 0


def _spec_with(tmp_path: Path, gates: list[dict]) -> Path:
    """The sample plant's spec with extra gates, in a folder that looks like the example
    (releases and config copied, the rest linked)."""

    import yaml

    sample_plant_copy(tmp_path)
    data = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    data["gates"] += gates
    (tmp_path / "plantstage.yaml").write_text(yaml.safe_dump(data, sort_keys=False,
                                                             allow_unicode=True))
    return tmp_path


@requires_postgres
@pytest.mark.postgres
def test_slow_import_is_caught_by_statements_per_transaction_on_postgresql(tmp_path,
                                                                          production_db):
    # Embedded SQLite hides a query per line (no round trips, no cost probe); PostgreSQL
    # staging counts the statements each business transaction costs, whatever the machine does.
    spec = _spec_with(tmp_path / "spec", [{
        "name": "import-statements", "use": "cost-ratio",
        "params": {"counter": "db_statements", "max_ratio": 1.5},
        "cause": "the new version runs more statements per business transaction"}])
    ev = _rehearse(tmp_path / "run", "1.1.0-slow-import", "--staging-db", PG_URL, spec=spec)
    failed = _failed(ev)
    assert "import-statements" in failed, ev["gates"]
    assert "import-statements" in _reasons(ev)
    sig = ev["signals"]
    assert sig["cost.candidate.db_statements.per_iteration"] > \
        1.5 * sig["cost.baseline.db_statements.per_iteration"]
