"""Release runtimes: a venv built once per artifact + requirements digest, then reused."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from plantstage.runtime import RuntimeBuildError, cache_root, resolve
from plantstage.spec.models import Release


def release(tmp_path, runtime: dict | None, name: str = "2.0.0") -> Release:
    art = tmp_path / "releases" / name
    art.mkdir(parents=True, exist_ok=True)
    (art / "app.py").write_text("print('hello')\n")
    return Release.model_validate({"name": name, "version": name,
                                   "artifact": {"path": f"releases/{name}", "sha256": "0" * 64},
                                   "runtime": runtime})


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTSTAGE_CACHE", str(tmp_path / "cache"))


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_without_runtime_python_is_plantstages(tmp_path):
    rt = resolve(tmp_path, release(tmp_path, None), where="releases[0].runtime")
    assert rt.python == sys.executable and rt.venv is None


def test_python_and_command_forms(tmp_path):
    rt = resolve(tmp_path, release(tmp_path, {"python": sys.executable}), where="r")
    assert rt.python == sys.executable
    rt = resolve(tmp_path, release(tmp_path, {"command": ["{artifact}/run", "--port", "{port}"]}),
                 where="r")
    assert rt.command == ["{artifact}/run", "--port", "{port}"]
    with pytest.raises(RuntimeBuildError, match="does not exist"):
        resolve(tmp_path, release(tmp_path, {"python": "envs/none/bin/python"}), where="r")


def test_cache_root_defaults_next_to_the_spec(tmp_path, monkeypatch):
    monkeypatch.delenv("PLANTSTAGE_CACHE")
    assert cache_root(tmp_path) == tmp_path / ".plantstage" / "runtimes"


def test_missing_requirements_is_one_line_with_the_field(tmp_path):
    with pytest.raises(RuntimeBuildError) as exc:
        resolve(tmp_path, release(tmp_path, {"requirements": "{artifact}/nope.txt"}),
                where="plantstage.yaml: releases[1].runtime")
    assert exc.value.where == "plantstage.yaml: releases[1].runtime.requirements"
    assert exc.value.exit_code == 2


def test_failed_build_names_pips_log_and_is_never_reused(tmp_path):
    (tmp_path / "req.txt").write_text("this is not === a requirement\n")
    rel = release(tmp_path, {"requirements": "req.txt"})
    with pytest.raises(RuntimeBuildError) as exc:
        resolve(tmp_path, rel, where="releases[0].runtime")
    line = exc.value.one_line()
    assert "pip install failed (exit" in line and ".pip.log" in line and "\n" not in line
    log = line.split("pip's log: ")[1].rstrip(")")
    assert "this is not" in open(log).read()
    with pytest.raises(RuntimeBuildError):  # no half-built venv is taken for a finished one
        resolve(tmp_path, rel, where="releases[0].runtime")


def test_concurrent_builds_of_one_runtime_build_once(tmp_path):
    # "-r base.txt" points into the release, so the artifact's digest is part of the key.
    (tmp_path / "base.txt").write_text("# nothing to install\n")
    (tmp_path / "req.txt").write_text("-r base.txt\n")
    rel = release(tmp_path, {"requirements": "req.txt"})
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(
        resolve(tmp_path, rel, where="r", artifact_digest="a" * 64))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.cached for r in out) == [False, True]
    assert out[0].python == out[1].python
    # Another artifact digest is another runtime.
    other = resolve(tmp_path, rel, where="r", artifact_digest="b" * 64)
    assert other.venv != out[0].venv and not other.cached
    # Requirements that name only index packages are shared whatever the artifact.
    (tmp_path / "shared.txt").write_text("# nothing to install\n")
    shared = release(tmp_path, {"requirements": "shared.txt"})
    one = resolve(tmp_path, shared, where="r", artifact_digest="c" * 64)
    two = resolve(tmp_path, shared, where="r", artifact_digest="d" * 64)
    assert one.venv == two.venv and not one.cached and two.cached


@pytest.mark.skipif(not _pypi_reachable(), reason="PyPI is not reachable")
def test_requirements_build_a_venv_once_then_the_cache_hits(tmp_path):
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    rel = release(tmp_path, {"requirements": "requirements.txt"})
    lines: list[str] = []
    t0 = time.perf_counter()
    first = resolve(tmp_path, rel, where="r", echo=lines.append)
    built_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = resolve(tmp_path, rel, where="r")
    hit_s = time.perf_counter() - t0
    assert not first.cached and second.cached and first.python == second.python
    assert any(line.startswith("building runtime") for line in lines)
    assert any("six" in line for line in lines)  # pip's progress reached the caller
    out = subprocess.run([second.python, "-c", "import six, sys; print(six.__version__, "
                          "sys.prefix)"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("1.17.0") and str(second.venv) in out
    print(f"venv build {built_s:.2f} s, cache hit {hit_s * 1000:.1f} ms")


def test_prepare_verifies_the_artifact_before_pip_runs_its_requirements(tmp_path):
    from types import SimpleNamespace

    from plantstage.errors import ArtifactError
    from plantstage.runtime import prepare

    rel = release(tmp_path, {"requirements": "{artifact}/requirements.txt"})
    (tmp_path / "releases" / "2.0.0" / "requirements.txt").write_text("six\n")
    loaded = SimpleNamespace(spec=SimpleNamespace(releases=[rel]), base_dir=tmp_path,
                             path=tmp_path / "plantstage.yaml",
                             where=lambda *p: "plantstage.yaml:9")
    with pytest.raises(ArtifactError) as exc:  # sha256 "000…" is not this artifact's digest
        prepare(loaded, [rel], echo=print)
    assert "releases[0].artifact.sha256" in exc.value.one_line()
    assert not (tmp_path / "cache" / "runtimes").exists()
    assert prepare(loaded, [release(tmp_path, None, "1.0.0")]) == {}


def _ctx(tmp_path, current: Release, rel: Release):
    from types import SimpleNamespace

    from plantstage.rehearsal.context import RunContext

    loaded = SimpleNamespace(spec=SimpleNamespace(releases=[current, rel]), base_dir=tmp_path,
                             path=tmp_path / "plantstage.yaml", where=lambda *p: "spec:1")
    return RunContext(loaded=loaded, release=rel, current=current, run_id="r",
                      run_dir=tmp_path / "run", ledger=None)


def test_python_placeholder_is_the_runtime_of_the_release_it_runs(tmp_path):
    other = tmp_path / "py" / "bin" / "python"
    other.parent.mkdir(parents=True)
    other.write_text("")
    cur = release(tmp_path, None, "1.0.0")
    new = release(tmp_path, {"python": "py/bin/python"}, "2.0.0")
    ctx = _ctx(tmp_path, cur, new)
    art_new = str(ctx.artifact_dir(new))
    assert ctx.expand("{python}", artifact=art_new) == str(other)
    assert ctx.expand("{python}", release=cur) == sys.executable
    assert ctx.expand("{python} {spec_dir}") == f"{sys.executable} {tmp_path}"
    assert set(ctx.runtimes) == {"1.0.0", "2.0.0"}  # both prepared at first use


def test_db_placeholder_parts(tmp_path):
    from types import SimpleNamespace

    from plantstage.rehearsal.context import db_url_part

    url = "postgresql+psycopg://app:pw@db.local:5433/ps_run"
    assert db_url_part(url, "") == url
    assert db_url_part(url, "url") == "postgresql://app:pw@db.local:5433/ps_run"
    assert db_url_part(url, "jdbc") == "jdbc:postgresql://db.local:5433/ps_run"
    assert (db_url_part(url, "host"), db_url_part(url, "port"), db_url_part(url, "name"),
            db_url_part(url, "user")) == ("db.local", "5433", "ps_run", "app")
    assert db_url_part("sqlite:////tmp/s.sqlite", "path") == "/tmp/s.sqlite"
    ctx = _ctx(tmp_path, release(tmp_path, None, "1.0.0"), release(tmp_path, None, "2.0.0"))
    ctx.staging_db = SimpleNamespace(app_url=lambda: url)
    ctx.database_component = lambda: "app.db"  # a component name may hold a dot
    assert ctx.expand("{db:app.db}") == url
    assert ctx.expand("-h {db:app.db.host} -p {db:app.db.port}") == "-h db.local -p 5433"


def test_python_for_a_release(tmp_path):
    from types import SimpleNamespace

    from plantstage.runtime import python_for

    plain = release(tmp_path, None, "1.0.0")
    own = release(tmp_path, {"python": sys.executable}, "2.0.0")
    loaded = SimpleNamespace(spec=SimpleNamespace(releases=[plain, own]), base_dir=tmp_path,
                             path=tmp_path / "plantstage.yaml", where=lambda *p: "spec:3")
    assert python_for(loaded, plain) == sys.executable == python_for(loaded, own)


def test_requirements_naming_only_index_packages_are_shared_between_releases(tmp_path):
    from plantstage.runtime import _self_contained

    cases = {
        "flask>=3\npaho-mqtt==2.1  # broker client\n--index-url https://pypi.example/s\n": True,
        "six @ https://files.example/six-1.16.0-py2.py3-none-any.whl\n": True,
        "-e .\n": False,
        "-r base.txt\nflask\n": False,
        "./vendor/pkg.whl\n": False,
        "vendor/pkg-1.0.tar.gz\n": False,
        "pkg @ file:///srv/pkg\n": False,
        "--find-links wheels\nflask\n": False,
    }
    for i, (text, shared) in enumerate(cases.items()):
        req = tmp_path / f"r{i}.txt"
        req.write_text(text)
        assert _self_contained(req) is shared, text
