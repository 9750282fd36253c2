DROP INDEX ix_recipes_code;
ALTER TABLE material_ledger DROP COLUMN lot;
DROP INDEX ix_batch_inputs_lot;
DROP TABLE batch_inputs;
