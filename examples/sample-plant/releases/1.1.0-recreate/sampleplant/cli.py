"""Command line: `python -m sampleplant serve|migrate ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from .db import make_engine, writer

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = writer(make_engine(url))
    return cfg


def migrate(action: str, revision: str | None = None, url: str | None = None) -> str | None:
    cfg = alembic_config(url)
    engine = cfg.attributes["engine"]
    try:
        if action == "upgrade":
            command.upgrade(cfg, revision or "head")
        elif action == "downgrade":
            if not revision:
                raise ValueError("downgrade needs a target revision, e.g. 0001")
            command.downgrade(cfg, revision)
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sampleplant")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the web app (uvicorn, one worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    mig = sub.add_parser("migrate", help="schema migrations")
    mig.add_argument("action", choices=["upgrade", "downgrade", "current"])
    mig.add_argument("revision", nargs="?")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "serve":
            import uvicorn

            from .app import create_app

            uvicorn.run(create_app(), host=args.host, port=args.port, workers=1,
                        log_level="warning")
        else:
            current = migrate(args.action, args.revision)
            if args.action == "current":
                print(current or "none")
    except Exception as exc:  # one-line error for operators and plantstage
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        print(f"sampleplant: error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    return 0
