-- 0002: batch lot genealogy. Expand-only: 2.0.0 keeps working on this schema.
-- Which input lots went into which batch, and the lot on each consumption posting.
CREATE TABLE batch_inputs (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id),
    material TEXT NOT NULL,
    lot TEXT NOT NULL,
    qty_g BIGINT NOT NULL,
    PRIMARY KEY (batch_id, material, lot)
);
CREATE INDEX ix_batch_inputs_lot ON batch_inputs (lot);
ALTER TABLE material_ledger ADD COLUMN lot TEXT;
-- where-used lookups go by recipe code
CREATE INDEX ix_recipes_code ON recipes (site, code);
