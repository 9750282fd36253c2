"""Fixtures for the sample plant tests: releases, generated databases, PostgreSQL."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text

sys.dont_write_bytecode = True  # never write __pycache__ into the release artifacts

ROOT = Path(__file__).resolve().parents[2] / "examples" / "sample-plant"
RELEASES = ROOT / "releases"
GENERATE = ROOT / "generate.py"
PG_ADMIN = "postgresql://127.0.0.1:5432/postgres"
SCALE = "0.1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs PostgreSQL at 127.0.0.1:5432")


def load_release(name: str) -> ModuleType:
    """Import releases/<name>/sampleplant under a unique alias (several versions per process)."""
    alias = "sampleplant_" + "".join(c if c.isalnum() else "_" for c in name)
    if alias not in sys.modules:
        pkg = RELEASES / name / "sampleplant"
        spec = importlib.util.spec_from_file_location(
            alias, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        spec.loader.exec_module(module)
        importlib.import_module(f"{alias}.app")
        importlib.import_module(f"{alias}.cli")
    return sys.modules[alias]


def run_generate(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, str(GENERATE), "--url", url, *extra], env=env,
                          capture_output=True, text=True, timeout=120)


def sp_env(url: str) -> dict[str, str]:
    return dict(os.environ, DATABASE_URL=url, PYTHONDONTWRITEBYTECODE="1")


def run_cli(release: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sampleplant", *args], cwd=RELEASES / release,
                          env=sp_env(url), capture_output=True, text=True, timeout=60)


def migrate(release: str, url: str, action: str, revision: str | None = None) -> str | None:
    return load_release(release).cli.migrate(action, revision, url=url)


INVARIANT_SQL = {
    # (a) on_hand matches the ledger, and every ledger (tenant, item) has an on_hand row
    "on_hand_mismatch": """
        SELECT COUNT(*) FROM (SELECT tenant_id, item_id, SUM(qty) AS s FROM inventory_ledger
                              GROUP BY tenant_id, item_id) l
        LEFT JOIN on_hand o ON o.tenant_id = l.tenant_id AND o.item_id = l.item_id
        WHERE o.qty IS NULL OR o.qty <> l.s""",
    "on_hand_orphans": """
        SELECT COUNT(*) FROM on_hand o WHERE o.qty <> 0 AND NOT EXISTS (
            SELECT 1 FROM inventory_ledger l
            WHERE l.tenant_id = o.tenant_id AND l.item_id = o.item_id)""",
    # (b) each confirmation message is posted once
    "double_posted": """
        SELECT COUNT(*) FROM (SELECT tenant_id, ref FROM inventory_ledger
                              WHERE source = 'confirmation'
                              GROUP BY tenant_id, ref HAVING COUNT(*) > 1) d""",
}


def scalar(url: str, sql: str) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def invariant_violations(url: str) -> dict[str, int]:
    return {name: scalar(url, sql) for name, sql in INVARIANT_SQL.items()}


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "plant.db"
    proc = run_generate(f"sqlite:///{path}", "--scale", SCALE)
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture
def db_url(template_db: Path, tmp_path: Path) -> str:
    """A private copy of the generated (revision 0001) SQLite database."""
    target = tmp_path / "plant.db"
    shutil.copyfile(template_db, target)
    return f"sqlite:///{target}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database sp_test_*, dropped afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}")
    name = f"sp_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def client_for():
    """client_for(release, url) -> TestClient running that release in-process."""
    from fastapi.testclient import TestClient

    clients = []

    def make(release: str, url: str) -> TestClient:
        app = load_release(release).app.create_app(url)
        client = TestClient(app)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
        c.app.state.engine.dispose()
