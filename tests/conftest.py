"""Shared fixtures; per-engine availability is declared here, in one place."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sample-plant"
PG_URL = os.environ.get("PLANTSTAGE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


requires_postgres = pytest.mark.skipif(
    not _reachable("127.0.0.1", 5432), reason="PostgreSQL is not running at 127.0.0.1:5432")

requires_mosquitto = pytest.mark.skipif(
    not _reachable("127.0.0.1", 1883),
    reason="Mosquitto is not running at 127.0.0.1:1883 "
           "(start it: mosquitto -d -c /etc/mosquitto/mosquitto.conf)")


@pytest.fixture
def pg_database():
    """A scratch PostgreSQL database, dropped afterwards; yields its URL."""
    if not _reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    import sqlalchemy as sa

    name = f"ps_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("postgresql+psycopg://root@127.0.0.1:5432/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://root@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def production_db() -> Path:
    """The sample plant's generated production database (made once per checkout)."""
    from plantstage.spec.loader import load_spec
    from plantstage.verbs import prepare_production

    prepare_production(load_spec(EXAMPLE), echo=lambda *_: None)
    return EXAMPLE / ".plantstage" / "production.sqlite"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the plantstage CLI as a user would, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "plantstage", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


requires_mariadb = pytest.mark.skipif(
    not _reachable("127.0.0.1", 3306), reason="MariaDB is not running at 127.0.0.1:3306")


@pytest.fixture
def mariadb_database():
    """A scratch MariaDB database (root, empty password), dropped afterwards; yields its URL."""
    if not _reachable("127.0.0.1", 3306):
        pytest.skip("MariaDB is not running at 127.0.0.1:3306")
    import sqlalchemy as sa

    name = f"ps_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE `{name}`"))
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(scope="session")
def signing_key_dir(tmp_path_factory) -> Path:
    """A throwaway evidence signing key folder (PLANTSTAGE_KEY_DIR) for the test session."""
    return tmp_path_factory.mktemp("signing-key")


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory, production_db, signing_key_dir) -> Path:
    """One finished demo rehearsal (GO), recorded once per session; copy it before changing it
    (use ``copy_run``)."""
    out = tmp_path_factory.mktemp("recorded") / "run"
    r = run_cli("demo", "--out", str(out), env={"PLANTSTAGE_KEY_DIR": str(signing_key_dir)})
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture
def copy_run(recorded_run, tmp_path):
    """A private copy of the recorded run folder."""
    import shutil

    def _copy(name: str = "run") -> Path:
        dst = tmp_path / name
        shutil.copytree(recorded_run, dst)
        return dst

    return _copy


def sample_plant_copy(dest: Path, example: Path = EXAMPLE) -> Path:
    """A folder that looks like an example (for a changed spec): what the spec names as files
    (releases, config, release steps) is copied, since artifacts must sit inside the spec's
    folder; the plugin modules, the generator and the generated data are linked. Returns where
    the spec goes (``dest / "plantstage.yaml"``, not written)."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(example.iterdir()):
        if p.name in {"plantstage.yaml", "README.md", "__pycache__"}:
            continue
        if p.is_dir() and p.name != ".plantstage":
            shutil.copytree(p, dest / p.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / p.name).symlink_to(p)
    return dest / "plantstage.yaml"


# -- headless Debian chromium (browser tests: the report, `plantstage serve`) ----------------
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
requires_chromedriver = pytest.mark.skipif(
    not CHROMEDRIVER.exists() or not CHROMIUM.exists(),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them: "
           "apt-get install -y chromium chromium-driver)")


def chromium_driver(*extra: str):
    """Selenium on Debian's chromium through Debian's chromium-driver, headless: never a
    browser or driver Selenium Manager would download. The caller quits it."""
    if not CHROMEDRIVER.exists() or not CHROMIUM.exists():
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-default-apps", *extra):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
