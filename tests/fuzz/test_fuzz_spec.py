"""Fuzz the spec loader and the spec validation (issue 10).

Over 2,000 generated specs: mutations of the sample plant's ``plantstage.yaml`` (values
swapped for hostile ones, lines dropped, duplicated, re-indented, truncated, alias bombs and
deep nesting spliced in), random YAML documents and random bytes. Every one must either load
or fail with :class:`SpecError` lines that each carry ``file:line`` — never another exception,
never a hang.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantstage.errors import PlantstageError, SpecError, SpecProblems
from plantstage.spec.loader import CRASH_MARK, LoadedSpec, load_spec, parse_spec_text
from tests.fuzz.conftest import examples, hang_guard

pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-plant" / "plantstage.yaml"
SAMPLE = EXAMPLE.read_text(encoding="utf-8")
SAMPLE_LINES = SAMPLE.splitlines(keepends=True)
# file:line, optionally followed by the field path (workload errors name it after the line)
WHERE = re.compile(r"^.+:\d+(: \S+)?$")

# Values a careless or hostile author might write where a scalar belongs.
HOSTILE = [
    "9" * 5000, "-1", "0", "70000", "1e999", "-1e999", ".nan", ".inf", "nan", "~", "null", "''",
    '""', "[]", "{}", "[1, [2, [3]]]", "{a: {b: {c: 1}}}", "!custom x", "!!binary '***'",
    "!!python/object:os.system ls", "*nowhere", "&anchor value", "<<: 7", "[", "{", "'", '"',
    "2026-13-45", "2026-02-30 25:61:61", "0x" + "f" * 40, "0o777777", "0b102", "yes", "no",
    "on", "off", "a\x01b", "\u202e", "\x85", "'\u0000'", '"\\x00"', "é" * 50,
    "{python}", "{nope}", "../../../../../../../..", "/etc/hostname", "/dev/zero",
    "mqtt://[::1", "http://x:99999", "sqlite:///" + "x" * 300, "a" * 5000,
    "|\n  block\n  text", ">-\n  folded", "? complex\n: key", "- a\n- b", "a: b: c",
    "$( reboot )", "${HOME}", "%TAG ! tag:x,2000:", "---", "...", "#comment",
]


def _bomb(levels: int, width: int) -> str:
    out = [f"b0: &b0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels):
        out.append(f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * width)}]")
    return "\n".join(out) + "\n"


@st.composite
def mutated_sample(draw) -> str:
    lines = list(SAMPLE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(
            ["value", "value", "value", "drop", "dup", "indent", "dedent", "key", "splice",
             "truncate", "merge", "list-for-number"]))
        line = lines[i]
        if kind == "value" and ":" in line:
            head = line.split(":", 1)[0]
            lines[i] = f"{head}: {draw(st.sampled_from(HOSTILE))}\n"
        elif kind == "list-for-number":
            lines[i] = re.sub(r"(?<=: )-?\d+(\.\d+)?", "[1, 2]", line, count=1)
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, line)
        elif kind == "indent":
            lines[i] = "  " + line
        elif kind == "dedent":
            lines[i] = line[2:] if line.startswith("  ") else line
        elif kind == "key" and ":" in line:
            indent = line[: len(line) - len(line.lstrip())]
            key = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=12))
            lines[i] = f"{indent}{key!r}: {line.split(':', 1)[1].strip()}\n"
        elif kind == "splice":
            piece = draw(st.sampled_from([
                _bomb(draw(st.integers(2, 9)), draw(st.integers(2, 12))),
                "deep: " + "[" * draw(st.integers(50, 1200)) + "]" * 1200 + "\n",
                "".join("  " * d + f"k{d}:\n" for d in range(draw(st.integers(60, 400)))),
                "cyc: &cyc [1, *cyc]\n",
                "m: &m {a: 1}\nn: {<<: [*m, *m, *m]}\n",
            ]))
            lines.insert(i, piece)
        elif kind == "truncate":
            cut = draw(st.integers(0, len(line)))
            lines[i] = line[:cut]
            del lines[i + 1:]
        elif kind == "merge":
            lines.insert(i, line[: len(line) - len(line.lstrip())] + "<<: "
                         + draw(st.sampled_from(["7", "[1]", "*nowhere", "{a: 1}"])) + "\n")
    return "".join(lines)


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(HOSTILE),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=30,
)
KEYS = ["name", "estate", "environments", "current", "releases", "workload", "gates",
        "parity", "refresh", "signoffs", "scoring", "reconcile", "paths", "version"]


def _dump(value) -> str:  # noqa: ANN001
    import yaml

    try:
        return yaml.safe_dump(value, allow_unicode=True)
    except yaml.YAMLError:
        return repr(value)


@st.composite
def random_yaml(draw) -> str:
    top = draw(st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=6))
    text = _dump(top)
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.sampled_from(HOSTILE)) + text[pos:]
    return text


def _assert_one_line_with_file_and_line(exc: PlantstageError) -> None:
    problems = exc.problems if isinstance(exc, SpecProblems) else [exc]
    assert problems
    for p in problems:
        assert isinstance(p, SpecError), repr(p)
        assert p.where and WHERE.match(p.where), f"no file:line in {p.one_line()!r}"
        assert "\n" not in p.one_line(), p.one_line()
        # One line, but a validator raised something unexpected: a bug to fix where it is.
        assert CRASH_MARK not in p.message, f"validator crash: {p.one_line()}"


def _validate(text: str) -> None:
    """What ``plantstage check`` does short of hashing artifacts."""
    try:
        loaded = parse_spec_text(text, EXAMPLE)
    except SpecError as exc:
        _assert_one_line_with_file_and_line(exc)
        return
    assert isinstance(loaded, LoadedSpec)


@examples(1000)
@given(mutated_sample())
def test_mutated_sample_specs_load_or_fail_with_file_and_line(text):
    with hang_guard():
        _validate(text)


@examples(700)
@given(random_yaml())
def test_random_yaml_loads_or_fails_with_file_and_line(text):
    with hang_guard():
        _validate(text)


@examples(200)
@given(st.binary(max_size=300), st.integers(0, len(SAMPLE.encode()) - 1),
       st.sampled_from([b"\xff", b"\xc3(", b"\x00", b"\x01", b"\xef\xbb\xbf", b"\xed\xa0\x80",
                        b"\r", b"\t\t", b"\xe2\x80\xae"]))
def test_bytes_on_disk_load_or_fail_with_file_and_line(tmp_path_factory, noise, at, poison):
    raw = SAMPLE.encode()
    raw = raw[:at] + poison + noise + raw[at:]
    spec = tmp_path_factory.mktemp("spec") / "plantstage.yaml"
    spec.write_bytes(raw)
    with hang_guard():
        try:
            load_spec(spec)
        except SpecError as exc:
            _assert_one_line_with_file_and_line(exc)


@examples(100)
@given(mutated_sample())
def test_check_validation_of_mutated_specs_names_the_line(text):
    """The check-time validators (workload plan, gate catalogue) on specs that load."""
    from plantstage import verbs

    with hang_guard():
        try:
            loaded = parse_spec_text(text, EXAMPLE)
        except SpecError:
            return
        problems = []
        from plantstage.workload.plan import validate as validate_workload

        for validate in (validate_workload, verbs._validate_gates):
            try:
                validate(loaded)
            except SpecError as exc:
                problems.append(exc)
            except PlantstageError as exc:  # a plugin or flow error: one line, a place
                assert exc.where and "\n" not in exc.one_line(), exc.one_line()
        for exc in problems:
            _assert_one_line_with_file_and_line(exc)
