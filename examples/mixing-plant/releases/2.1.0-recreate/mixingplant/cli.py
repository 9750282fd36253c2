"""``python -m mixingplant serve | migrate up [N] | migrate down N | migrate status``."""

from __future__ import annotations

import argparse
import logging
import sys

from . import VERSION, migrate
from .db import connect, database_url


def _version(text: str) -> str:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a migration number: {text!r}")
    return f"{int(text):04d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixingplant", description=f"mixingplant {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API and the integrations")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    mig = sub.add_parser("migrate", help="apply or revert numbered SQL migrations")
    mig_sub = mig.add_subparsers(dest="direction", required=True)
    mig_up = mig_sub.add_parser("up", help="apply pending migrations (up to N)")
    mig_up.add_argument("target", nargs="?", type=_version)
    mig_down = mig_sub.add_parser("down", help="revert applied migrations above N")
    mig_down.add_argument("target", type=_version)
    mig_sub.add_parser("status", help="print the applied head")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")

    if args.command == "migrate":
        db = connect()
        try:
            if args.direction == "up":
                ran = migrate.up(db, args.target)
            elif args.direction == "down":
                ran = migrate.down(db, args.target)
            else:
                print(migrate.current(db) or "none")
                return 0
        except migrate.MigrationError as exc:
            print(f"mixingplant: migration failed: {exc}", file=sys.stderr)
            return 1
        finally:
            db.close()
        print(f"{args.direction}: {', '.join(ran) or 'nothing to do'}; "
              f"schema {migrate.current(connect()) or 'none'}")
        return 0

    from werkzeug.serving import run_simple

    from .app import create_app
    from .integrations import from_environment

    url = database_url()
    integrations = from_environment(url)
    app = create_app(url, integrations)
    integrations.start()
    try:
        run_simple(args.host, args.port, app, threaded=True)
    finally:
        integrations.stop()
    return 0
