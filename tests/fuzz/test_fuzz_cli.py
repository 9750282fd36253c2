"""Fuzz the command line in-process (issue 10): every verb, random arguments and options.

Each call runs ``plantstage.cli.run`` inside click's ``CliRunner`` isolation. No call may start
real work: spec paths and run folders are always bad (missing, a text file, malformed YAML, an
alias bomb, 5,000 characters …), ``demo`` always carries one option that must be refused, and
``record`` always gets a source that is not a valid URL. Every call must end with a documented
exit code and, on a failure, only ``error: …`` lines on stderr — never a traceback, never an
"internal error", never a hang.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from plantstage import cli, errors
from tests.fuzz.conftest import examples, hang_guard

pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")

# The documented exit codes (plantstage.errors, docs/cli.md).
EXIT_CODES = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
LONG = "x" * 5000
ROOT = Path(os.environ.get("PLANTSTAGE_FUZZ_DIR", "/tmp")) / f"plantstage-fuzz-{os.getpid()}"


def _fixtures() -> dict[str, str]:
    """Bad inputs on disk, made once per process."""
    f = {}
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / "notes.txt").write_text("just some notes\n")
    f["text"] = str(ROOT / "notes.txt")
    (ROOT / "empty").mkdir(exist_ok=True)
    f["empty"] = str(ROOT / "empty")
    f["missing"] = str(ROOT / "missing" / "plantstage.yaml")
    for name, body in {
        "badyaml": "name: x\nestate: {components: {a: [\n",
        "invalid": "name: x\nestate: 7\n",
        "bomb": 'a: &a ["l","l","l","l","l","l","l","l","l"]\n' + "".join(
            f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi",
                                                                     strict=True)),
        "tag": "name: !custom x\n",
        "deep": "a: " + "[" * 2000 + "]" * 2000 + "\n",
    }.items():
        d = ROOT / name
        d.mkdir(exist_ok=True)
        (d / "plantstage.yaml").write_text(body)
        f[name] = str(d)
    (ROOT / "latin1").mkdir(exist_ok=True)
    (ROOT / "latin1" / "plantstage.yaml").write_bytes(b"name: caf\xe9\n")
    f["latin1"] = str(ROOT / "latin1")
    (ROOT / "specdir" / "plantstage.yaml").mkdir(parents=True, exist_ok=True)
    f["specdir"] = str(ROOT / "specdir")
    run = ROOT / "badrun"
    run.mkdir(exist_ok=True)
    (run / "evidence.json").write_text("{not json")
    (run / "chain.jsonl").write_bytes(b'{"seq": 1, "x": "\xff\xfe"}\n')
    f["badrun"] = str(run)
    (ROOT / "fake.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot base64 !!\n"
                                   "-----END PUBLIC KEY-----\n")
    f["fakepem"] = str(ROOT / "fake.pem")
    fifo = ROOT / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)  # reading it would block: every verb must refuse it first
    f["fifo"] = str(fifo)
    (ROOT / "keys").mkdir(exist_ok=True)
    (ROOT / "home").mkdir(exist_ok=True)
    return f


F = _fixtures()
BAD_SPECS = [F["missing"], F["text"], F["empty"], F["badyaml"], F["invalid"], F["bomb"],
             F["tag"], F["deep"], F["latin1"], F["specdir"], LONG, "", "/proc/self/none",
             "/dev/null", "/" + "a" * 300, "no\u202edir", F["fifo"], "/dev/zero"]
BAD_RUNS = [F["missing"], F["text"], F["empty"], F["badrun"], LONG, "", "/proc/self/none",
            F["fifo"], "/dev/zero"]
OUTS = ["/proc/x", "/sys/x", F["text"], "", LONG, "/dev/null", str(ROOT / "out" / "new"),
        F["text"] + "/below-a-file"]
INTS = ["-1", "0", "1", "65535", "70000", "abc", "", "1e3", "9" * 30]
FLOATS = ["nan", "inf", "-inf", "-1", "0", "0.1", "60", "61", "abc", "", "1e309"]
STRS = ["", " ", "production", "staging", LONG, "é\u202e", "\x01", "--", "-x", "a b",
        "approve", "reject", "2020-01-01", "9999-99-99"]
URLS = ["", "mqtt://[::1", "mqtt://", "http://x:99999", "mqtt://h:70000", "ftp://x", "sqlite:///",
        "postgresql://u:p@h/db", "mqtt://127.0.0.1:0", "http://[", LONG, "not a url",
        "sqlite:///" + F["text"]]
# record's source: never one that could be reached (recording would run until stopped).
BAD_SOURCES = ["", "mqtt://[::1", "mqtt://", "ftp://x", "mqtt://h:70000", "http://[",
               "mqtt://127.0.0.1:0", LONG, "mqtt:/missing-slash", "http://:80"]
FLAG = None

VERBS: dict[str, tuple[list[list[str]], dict[str, list[str] | None]]] = {
    "schema": ([], {}),
    "check": ([BAD_SPECS], {}),
    "digest": ([[F["missing"], F["text"], F["empty"], LONG, "/dev/null",
                 "/proc/self/none"]], {}),
    "rehearse": ([BAD_SPECS], {"--release": STRS, "--out": OUTS, "--staging-db": URLS,
                               "--keep-staging": FLAG, "--ring": STRS}),
    "demo": ([], {"--out": OUTS, "--release": STRS, "--staging-db": URLS}),
    "refresh": ([BAD_SPECS], {"--from": STRS + URLS + [F["text"]], "--to": STRS + URLS,
                              "--allow-unclassified": FLAG, "--plan": FLAG}),
    "gate": ([BAD_RUNS], {"--spec": BAD_SPECS}),
    "signoff": ([BAD_RUNS], {"--role": STRS, "--by": STRS, "--decision": STRS,
                             "--reason": STRS, "--waive": STRS, "--expires": STRS}),
    "verify": ([BAD_RUNS], {"--key": [F["text"], F["missing"], F["empty"], F["fakepem"], LONG,
                                      "", "/dev/null"]}),
    "parity": ([BAD_SPECS], {"--between": STRS, "--staging-db": URLS, "--out": OUTS,
                             "--broker-window": FLOATS, "--all": FLAG}),
    "twins": ([BAD_SPECS], {"--broker": URLS, "--only": STRS, "--duration": FLOATS}),
    "record": ([BAD_SOURCES], {"--out": OUTS, "--topic": STRS, "--listen": INTS,
                               "--duration": FLOATS, "--count": INTS}),
    "load": ([BAD_SPECS], {"--target": URLS, "--duration": FLOATS, "--rate": FLOATS,
                           "--tenant": STRS, "--out": OUTS, "--metrics-port": INTS,
                           "--database-url": URLS, "--mqtt": URLS}),
    "signals": ([BAD_RUNS], {"--format": ["openmetrics", "csv", "", "xml", LONG]}),
    "keys": ([["bogus", "", LONG]], {}),
    "rings": ([BAD_SPECS], {"--release": STRS, "--runs": [F["missing"], F["text"], LONG],
                            "--json": FLAG}),
    # serve: never a folder with runs (it would serve until stopped), so its path is never
    # left out (the default "." may hold runs).
    "serve": ([BAD_RUNS], {"--port": INTS, "--host": ["", "256.1.1.1", "not a host", LONG],
                           "--trusted-proxy": ["", "proxy", "10.0.0.0/33", LONG],
                           "--identity-header": STRS, "--allowed-host": STRS}),
}
# demo has no spec to spoil: each call carries one of these, which must be refused.
DEMO_POISON = [("--staging-db", ""), ("--out", "/proc/x"), ("--out", F["text"]),
               ("--release", ""), ("--staging-db", "mqtt://[::1"), ("--bogus", "1")]


@functools.cache
def _registered_verbs() -> list[str]:
    import typer

    group = typer.main.get_command(cli.app)
    return sorted(group.commands)  # type: ignore[attr-defined]  # built once per process


@st.composite
def argv(draw) -> list[str]:
    verbs = _registered_verbs()
    verb = draw(st.sampled_from(verbs))
    if verb not in VERBS:
        # A verb this fuzzer does not know yet: only calls that cannot start work.
        return [verb, draw(st.sampled_from(["--help", "--no-such-option", LONG]))]
    positionals, options = VERBS[verb]
    args = [verb]
    for pool in positionals:
        if draw(st.integers(0, 9)) > 0 or verb == "serve":  # now and then leave one out
            args.append(draw(st.sampled_from(pool)))
    poison = draw(st.sampled_from(DEMO_POISON)) if verb == "demo" else None
    names = [o for o in options if poison is None or o != poison[0]]
    for name in draw(st.lists(st.sampled_from(names), max_size=4)) if names else []:
        pool = options[name]
        if pool is FLAG:
            args.append(name)
        elif name == "--between":
            args += [name, draw(st.sampled_from(pool)), draw(st.sampled_from(pool))]
        else:
            args += [name, draw(st.sampled_from(pool))]
    if poison is not None:
        args[1:1] = list(poison)
    extra = draw(st.sampled_from([None, None, None, None, "--help", "--no-such-option",
                                  "surplus-argument", "--version"]))
    if extra is not None:
        args.insert(draw(st.integers(1, len(args))), extra)
    return args


def _call(args: list[str]) -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"PLANTSTAGE_KEY_DIR": str(ROOT / "keys"), "HOME": str(ROOT / "home"),
           "XDG_CONFIG_HOME": str(ROOT / "home"), "PLANTSTAGE_MQTT_URL": None,
           "COLUMNS": "200"}
    with runner.isolation(env=env) as (out, err, _):
        try:
            code = cli.run(args)
        except SystemExit as exc:  # a verb may sys.exit with its code
            code = exc.code if isinstance(exc.code, int) else 2
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return code, stdout, stderr


CALLS = {"n": 0}


@examples(520)
@given(argv())
def test_cli_calls_end_with_a_documented_code_and_one_line_errors(args):
    with hang_guard(60):
        code, stdout, stderr = _call(args)
    CALLS["n"] += 1
    shown = f"plantstage {' '.join(a[:60] for a in args)!s} → {code}\n{stderr[-2000:]}"
    assert code in EXIT_CODES, shown
    assert "Traceback" not in stdout + stderr, shown
    assert "internal error" not in stderr, shown
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code == 2 and "--help" not in args and "--version" not in args:
        assert lines, shown
        for line in lines:
            assert line.startswith("error: ") or line.startswith("  (run folder:"), shown
        # One problem per line; only `check` lists several.
        assert len(lines) == 1 or args[0] == "check", shown


def test_the_fuzzer_covers_every_registered_verb():
    missing = set(_registered_verbs()) - set(VERBS)
    assert not missing, f"add these verbs to VERBS in {__file__}: {sorted(missing)}"
