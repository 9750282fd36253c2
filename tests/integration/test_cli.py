"""The CLI as a user runs it: exit codes and one-line errors for bad input."""

from pathlib import Path

from tests.conftest import EXAMPLE, run_cli


def test_check_example_ok():
    r = run_cli("check", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "components" in r.stdout


def test_malformed_spec_exit_2_with_file_line(tmp_path: Path):
    bad = tmp_path / "plantstage.yaml"
    bad.write_text("name: x\nestate:\n  components: {a: [\n")
    r = run_cli("check", str(bad))
    assert r.returncode == 2
    assert f"{bad}:" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_field_exit_2(tmp_path: Path):
    original = (EXAMPLE / "plantstage.yaml").read_text()
    assert "\nworkload:\n" in original
    text = original.replace("\nworkload:\n", "\nworkload:\n  durration: 7\n")
    spec = tmp_path / "plantstage.yaml"
    spec.write_text(text)
    r = run_cli("check", str(spec))
    assert r.returncode == 2
    assert "workload.durration" in r.stderr and "unknown field" in r.stderr
    line = text.splitlines().index("  durration: 7") + 1
    assert f"plantstage.yaml:{line}" in r.stderr


def test_missing_file_exit_2(tmp_path: Path):
    r = run_cli("check", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and "not found" in r.stderr


def test_debug_shows_traceback(tmp_path: Path):
    r = run_cli("--debug", "check", str(tmp_path / "none.yaml"))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_schema_prints_json():
    import json

    r = run_cli("schema")
    assert r.returncode == 0
    assert "releases" in json.loads(r.stdout)["properties"]


def test_digest_matches_the_spec():
    import yaml

    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    rel = spec["releases"][1]
    r = run_cli("digest", str(EXAMPLE / rel["artifact"]["path"]))
    assert r.stdout.strip() == rel["artifact"]["sha256"]
