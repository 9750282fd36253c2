-- Vendor-style pre-upgrade SQL for 1.1.0 (lot tracking; shipped inside the release), run on the database before the
-- migration, as the release notes prescribe. It changes nothing: it reports what the upgrade
-- will touch, and fails the rehearsal if the database is not the one 1.0.0 left behind.

-- The tables the migration alters must exist (an error here stops the upgrade).
SELECT COUNT(*) AS ledger_entries FROM inventory_ledger;
SELECT COUNT(*) AS confirmations FROM production_confirmations;

-- Stock the upgrade must leave as it is, per tenant (compare with the reconcile check
-- stock-unchanged-by-upgrade in the report).
SELECT tenant_id, COUNT(*) AS items, SUM(qty) AS on_hand
FROM on_hand
GROUP BY tenant_id
ORDER BY tenant_id;
