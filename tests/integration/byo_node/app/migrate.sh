#!/bin/sh
# migrate.sh up | down N — plain SQL files applied with sqlite3; schema_migrations holds the head.
set -e
cd "$(dirname "$0")"
APP_DB="${APP_DB#sqlite:///}"
sqlite3 "$APP_DB" "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"
head=$(sqlite3 "$APP_DB" "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
if [ "$1" = up ]; then
  for f in sql/*_up.sql; do
    v=$(basename "$f" | cut -d_ -f1 | sed 's/^0*//')
    if [ "$v" -gt "$head" ]; then
      echo "applying $f"
      sqlite3 "$APP_DB" ".read $f" "INSERT INTO schema_migrations VALUES ($v)"
    fi
  done
elif [ "$1" = down ]; then
  f=$(printf 'sql/%04d_down.sql' "$head")
  [ -f "$f" ] || { echo "error: no down migration for $head" >&2; exit 1; }
  echo "reverting $f"
  sqlite3 "$APP_DB" ".read $f" "DELETE FROM schema_migrations WHERE version = $head"
fi
