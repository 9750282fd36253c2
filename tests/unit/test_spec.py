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
