#!/bin/sh
# Production-like data for the trial: two tenants, a few SKUs with gram quantities.
set -e
APP_DB="$1" sh releases/1.0.0/migrate.sh up >/dev/null
sqlite3 "$1" "INSERT INTO stock VALUES ('north','SKU-1',12500),('north','SKU-2',750),('south','SKU-1',3000);
INSERT INTO ledger (tenant, sku, qty_g, ref) VALUES ('north','SKU-1',12500,'init'),('north','SKU-2',750,'init'),('south','SKU-1',3000,'init');"
