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


def test_check_lists_every_problem_on_its_own_line(tmp_path: Path):
    original = (EXAMPLE / "plantstage.yaml").read_text()
    text = original.replace("\nworkload:\n", "\nworkload:\n  durration: 7\n  colour: red\n")
    text = text.replace("\nestate:\n", "\nestate:\n  size: huge\n", 1)
    spec = tmp_path / "plantstage.yaml"
    spec.write_text(text)
    r = run_cli("check", str(spec))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3, r.stderr
    for field in ("workload.durration", "workload.colour", "estate.size"):
        (hit,) = [line for line in lines if field in line]
        key = field.rsplit(".", 1)[1]
        number = next(n for n, line in enumerate(text.splitlines(), 1)
                      if line.startswith(f"  {key}:"))
        assert hit.startswith(f"error: {spec}:{number}: {field}: unknown field"), hit
    assert "more problem" not in r.stderr


def test_alias_bomb_fails_fast_with_one_line(tmp_path: Path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    spec = tmp_path / "plantstage.yaml"
    spec.write_text("\n".join(lines) + "\n")
    r = run_cli("check", str(spec), timeout=60)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and f"{spec}:" in r.stderr


def test_argument_errors_are_one_line_naming_the_option(tmp_path: Path):
    text = tmp_path / "notes.txt"
    text.write_text("not a key\n")
    cases = [
        (["twins", str(tmp_path), "--duration", "nan"], "--duration"),
        (["rehearse", str(tmp_path), "--staging-db", ""], "--staging-db"),
        (["verify", str(tmp_path), "--key", str(text)], "--key"),
        (["load", str(tmp_path), "--metrics-port", "70000"], "--metrics-port"),
        (["record", "mqtt://[::1", "--out", str(tmp_path / "c.jsonl")], "source"),
        (["demo", "--out", "/proc/x"], "--out"),
        (["check", "x" * 5000], "path"),
        (["refresh", str(tmp_path), "--from", str(text)], "--from"),
    ]
    for args, option in cases:
        r = run_cli(*args, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and option in lines[0] and "hint:" in lines[0], (args, r.stderr)


def test_feature_cli_modules_do_not_import_the_cli_back():
    src = Path(__file__).resolve().parents[2] / "src" / "plantstage"
    for module in src.glob("*/cli.py"):
        text = module.read_text()
        assert "from plantstage.cli import" not in text, module
        assert "import plantstage.cli\n" not in text, module


def _in_process(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from plantstage import cli

    with CliRunner().isolation(env={"COLUMNS": "200"}) as (out, err, _):
        code = cli.run(list(args))
        return code, out.getvalue().decode(), err.getvalue().decode()


def test_os_errors_are_one_line_naming_the_file(monkeypatch):
    import errno

    from plantstage import verbs

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/.plantstage")

    monkeypatch.setattr(verbs, "check", read_only)
    code, _, err = _in_process("check", ".")
    assert code == 2
    assert err.strip() == ("error: /mnt/ro/.plantstage: Read-only file system (hint: check the "
                           "path, its permissions and the free space)")


def test_unexpected_errors_are_one_line_and_debug_shows_them(monkeypatch):
    import pytest

    from plantstage import verbs

    def broken(*_a, **_k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(verbs, "check", broken)
    code, _, err = _in_process("check", ".")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "internal error: RuntimeError: boom second line" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        _in_process("--debug", "check", ".")


def test_usage_errors_are_one_line():
    code, _, err = _in_process("no-such-verb")
    assert code == 2 and err.startswith("error: No such command") and "hint:" in err
    code, _, err = _in_process("check", "--no-such-option")
    assert code == 2 and "--no-such-option" in err and len(err.strip().splitlines()) == 1
    code, out, _ = _in_process()
    assert code == 2 and "Usage" in out


def test_a_full_disk_is_one_line(monkeypatch):
    import sqlite3

    from plantstage import verbs

    def full(*_a, **_k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(verbs, "check", full)
    code, _, err = _in_process("check", ".")
    assert code == 2 and err.startswith("error: database or disk is full (hint: free some space")
    assert "internal error" not in err and len(err.strip().splitlines()) == 1
