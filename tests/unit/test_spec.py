from pathlib import Path

import pytest

from plantstage.errors import SpecError
from plantstage.spec import load_spec, parse_spec_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-plant" / "plantstage.yaml"

MINIMAL = """\
name: tiny
estate:
  components:
    app: {kind: service, tier: 1}
    db: {kind: database, tier: 1}
environments:
  production:
    bindings:
      db: {url: "sqlite:///prod.db"}
  staging:
    bindings:
      db: {url: "sqlite:///stage.db"}
      app: {command: ["{python}", "-m", "app"]}
current: "1.0"
releases:
  - name: "1.0"
    version: "1.0"
    artifact: {path: rel, sha256: "%s"}
""" % ("0" * 64)


def _err(text: str) -> SpecError:
    with pytest.raises(SpecError) as exc:
        parse_spec_text(text, Path("plantstage.yaml"))
    return exc.value


def test_example_spec_is_valid():
    loaded = load_spec(EXAMPLE)
    assert loaded.spec.current == "1.0.0"
    assert {r.name for r in loaded.spec.releases} >= {"1.1.0", "1.1.0-dup-confirmations"}


def test_minimal_spec_loads():
    spec = parse_spec_text(MINIMAL, Path("x.yaml")).spec
    assert spec.estate.components["db"].kind.value == "database"


def test_malformed_yaml_names_the_line():
    e = _err(MINIMAL.replace("kind: database, tier: 1}", "kind: database, tier: 1"))
    assert e.where.startswith("plantstage.yaml:")
    assert "malformed YAML" in e.message


def test_unknown_field_names_line_and_path():
    text = MINIMAL.replace("    app: {kind: service, tier: 1}",
                           "    app: {kind: service, tier: 1, colour: red}")
    e = _err(text)
    assert e.where == "plantstage.yaml:4"
    assert "estate.components.app.colour" in e.message and "unknown field" in e.message


def test_bad_enum_value():
    e = _err(MINIMAL.replace("kind: database", "kind: datbase"))
    assert e.where == "plantstage.yaml:5"
    assert "estate.components.db.kind" in e.message


def test_missing_required_field():
    e = _err(MINIMAL.replace('current: "1.0"\n', ""))
    assert "current" in e.message and "missing" in e.message


def test_cross_reference_error():
    e = _err(MINIMAL.replace('current: "1.0"', 'current: "9.9"'))
    assert "current" in e.message and "9.9" in e.message


def test_inline_password_is_refused():
    e = _err(MINIMAL.replace("sqlite:///prod.db", "postgresql://u:hunter2@h/db"))
    assert "password" in e.message
    assert "hunter2" not in e.one_line()


def test_duplicate_key():
    e = _err(MINIMAL.replace("name: tiny\n", "name: tiny\nname: other\n"))
    assert "duplicate key" in e.message and e.where == "plantstage.yaml:2"


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as exc:
        load_spec(tmp_path / "nope.yaml")
    assert "not found" in exc.value.message


def test_json_schema_lists_top_level_fields():
    import json

    from plantstage.spec import json_schema

    schema = json.loads(json_schema())
    assert {"estate", "environments", "releases", "gates"} <= set(schema["properties"])


# -- bounded, line-accurate YAML (issue 10) -----------------------------------------------

def _bomb() -> str:
    """A classic "billion laughs": 9 levels of 9 aliases, about 500 bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_with_one_line():
    text = _bomb()
    assert len(text.encode()) <= 510
    e = _err(text)
    assert "alias" in e.message and e.where.startswith("plantstage.yaml:")
    assert "\n" not in e.one_line()


def test_alias_count_is_limited():
    from plantstage.spec.loader import MAX_ALIASES

    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    e = _err(text)
    assert "aliases" in e.message and e.where == "plantstage.yaml:2"


def test_recursive_alias_is_refused():
    e = _err("a: &a [1, *a]\n")
    assert "cycle" in e.message and e.where == "plantstage.yaml:1"


def test_line_map_does_not_expand_aliases():
    import yaml

    from plantstage.spec.loader import _line_map

    # 9 levels of 9 aliases is 9**9 paths when expanded; the map walks each node once.
    root = yaml.compose(_bomb(), Loader=yaml.SafeLoader)
    lines = _line_map(root)
    assert len(lines) < 200
    assert lines[("i",)] == 9


@pytest.mark.parametrize("text, line, words", [
    ("name: x\n<<: 7\n", 2, "merging"),
    ("name: !custom x\n", 1, "tag"),
    ("name: x\ntier: " + "9" * 5000 + "\n", 2, "int"),
    ("a: " + "[" * 1000 + "]" * 1000 + "\n", 1, "nest"),
    ("".join("  " * i + f"k{i}:\n" for i in range(1000)), None, "nest"),
    ("name: x\nnote: a\x01b\n", 2, "#x0001"),
    ("name: x\nnote: \x00\n", 2, "#x0000"),
    ("name: 2026-13-45\n", 1, "timestamp"),
    ("? [a, b]\n: x\n", 1, "unhashable"),
    ("name: !!binary '***'\nx: [\n", None, "malformed YAML"),
])
def test_every_yaml_error_is_one_line_with_file_and_line(text, line, words):
    e = _err(text)
    assert words in e.message
    file, _, number = e.where.rpartition(":")
    assert file == "plantstage.yaml" and number.isdigit()
    if line is not None:
        assert int(number) == line
    assert "\n" not in e.one_line() and "Traceback" not in e.one_line()


def test_bad_utf8_names_the_line(tmp_path):
    spec = tmp_path / "plantstage.yaml"
    spec.write_bytes(MINIMAL.encode().replace(b"name: tiny", b"name: ti\xffny"))
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    assert exc.value.where == f"{spec}:1" and "UTF-8" in exc.value.message


def test_oversized_spec_is_refused(tmp_path):
    from plantstage.spec.loader import MAX_SPEC_BYTES

    spec = tmp_path / "plantstage.yaml"
    spec.write_text(MINIMAL + "#" * MAX_SPEC_BYTES)
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    assert "bytes" in exc.value.message and exc.value.where == f"{spec}:1"


def test_every_validation_problem_is_listed_with_line_and_field():
    from plantstage.errors import SpecProblems

    text = (MINIMAL.replace("tier: 1}", "tier: 9}", 1)
            .replace("kind: database", "kind: datbase")
            .replace('    version: "1.0"\n', '    version: "1.0"\n    colour: red\n'))
    with pytest.raises(SpecProblems) as exc:
        parse_spec_text(text, Path("plantstage.yaml"))
    got = {(p.where, p.message.split(":")[0]) for p in exc.value.problems}
    assert got == {("plantstage.yaml:4", "estate.components.app.tier"),
                   ("plantstage.yaml:5", "estate.components.db.kind"),
                   ("plantstage.yaml:18", "releases[0].colour")}
    assert "2 more problems" in exc.value.one_line()


def test_model_level_problem_points_at_the_named_field():
    e = _err(MINIMAL.replace("      db: {url: \"sqlite:///stage.db\"}",
                             "      db: {url: \"sqlite:///stage.db\"}\n      ghost: {}"))
    assert "ghost" in e.message
    assert e.where == "plantstage.yaml:13"


@pytest.mark.parametrize("path, words", [
    ("../../../../../../../..", "outside the spec's folder"),
    ("/etc/hostname", "absolute paths outside"),
    ("rel/../../elsewhere", "outside the spec's folder"),
])
def test_artifact_paths_are_confined(tmp_path, path, words):
    spec = tmp_path / "plantstage.yaml"
    spec.write_text(MINIMAL.replace("path: rel", f"path: {path}"))
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    assert "releases[0].artifact.path" in exc.value.message
    assert exc.value.where == f"{spec}:18"
    assert words in exc.value.one_line()


def test_allow_outside_permits_a_named_root(tmp_path):
    outside = tmp_path / "builds"
    outside.mkdir()
    home = tmp_path / "project"
    home.mkdir()
    spec = home / "plantstage.yaml"
    text = MINIMAL.replace("path: rel", f"path: {outside}")
    spec.write_text(text)
    with pytest.raises(SpecError):
        load_spec(spec)
    spec.write_text(text + "paths: {allow_outside: [../builds]}\n")
    assert load_spec(spec).spec.paths.allow_outside == ["../builds"]


def test_symlink_out_of_the_spec_folder_is_refused(tmp_path):
    home = tmp_path / "project"
    home.mkdir()
    (home / "rel").symlink_to("/etc")
    spec = home / "plantstage.yaml"
    spec.write_text(MINIMAL)
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    assert "outside" in exc.value.message


def test_line_of_and_where_on_a_loaded_spec(tmp_path):
    spec = tmp_path / "plantstage.yaml"
    spec.write_text(MINIMAL)
    loaded = load_spec(spec)
    assert loaded.line_of("releases", 0, "artifact") == 18
    assert loaded.where("estate", "components", "db") == f"{spec.resolve()}:5"


def test_a_crashing_validator_is_still_one_line(monkeypatch):
    from plantstage.spec import loader

    def crash(data, *a, **k):  # noqa: ANN001
        raise TypeError("float() argument must be a string or a real number, not 'list'")

    monkeypatch.setattr(loader.Spec, "model_validate", crash)
    e = _err(MINIMAL)
    assert loader.CRASH_MARK in e.message and "TypeError: float()" in e.message
    assert e.where == "plantstage.yaml:1" and "\n" not in e.one_line()


def test_a_crash_is_located_at_its_list_item():
    from plantstage.spec.loader import _locate_crash

    assert _locate_crash({"gates": [{"name": "ok", "pass": "true"},
                                    {"name": "x", "use": "error-rate",
                                     "params": {"max": [1, 2]}}]}) in {("gates", 1), ()}


def test_load_yaml_is_bounded_for_any_file():
    from plantstage.spec.loader import load_yaml

    assert load_yaml("a: [1, 2]\n", "cfg.yaml") == {"a": [1, 2]}
    assert load_yaml("", "cfg.yaml") is None
    with pytest.raises(SpecError) as exc:
        load_yaml(_bomb(), "cfg.yaml")
    assert exc.value.where.startswith("cfg.yaml:")
    with pytest.raises(SpecError) as exc:
        load_yaml("a: b\na: c\n", "cfg.yaml")
    assert exc.value.where == "cfg.yaml:2"


def test_a_pipe_or_device_is_not_read(tmp_path):
    import os

    fifo = tmp_path / "plantstage.yaml"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(SpecError) as exc:
            load_spec(path)
        assert "not a regular file" in exc.value.message
