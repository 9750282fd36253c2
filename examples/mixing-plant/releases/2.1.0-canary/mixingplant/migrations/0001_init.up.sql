-- mixingplant schema 0001: sites, materials, recipes, batches, the material ledger and stock.
-- Quantities are integer grams (qty_g); recipe shares are thousandths of a percent
-- (pct_milli, 100 % = 100000). Both are exact in every database.
CREATE TABLE sites (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL
);

CREATE TABLE materials (
    site TEXT NOT NULL REFERENCES sites (code),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('raw', 'intermediate', 'finished')),
    PRIMARY KEY (site, code)
);

CREATE TABLE recipes (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites (code),
    code TEXT NOT NULL,
    revision INTEGER NOT NULL,
    material TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
    created_at TEXT NOT NULL,
    FOREIGN KEY (site, material) REFERENCES materials (site, code)
);
CREATE INDEX ix_recipes_material ON recipes (site, material, status);

CREATE TABLE recipe_lines (
    recipe_id TEXT NOT NULL REFERENCES recipes (id),
    line_no INTEGER NOT NULL,
    site TEXT NOT NULL,
    material TEXT NOT NULL,
    pct_milli INTEGER NOT NULL CHECK (pct_milli > 0 AND pct_milli <= 100000),
    PRIMARY KEY (recipe_id, line_no),
    FOREIGN KEY (site, material) REFERENCES materials (site, code)
);

CREATE TABLE batches (
    batch_id TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites (code),
    recipe_id TEXT NOT NULL REFERENCES recipes (id),
    material TEXT NOT NULL,
    qty_g BIGINT NOT NULL,
    completed_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX ix_batches_site_completed ON batches (site, completed_at);

CREATE TABLE material_ledger (
    entry_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    material TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('produce', 'consume', 'receive', 'adjust')),
    qty_g BIGINT NOT NULL,
    ref TEXT,
    posted_at TEXT NOT NULL,
    FOREIGN KEY (site, material) REFERENCES materials (site, code)
);
CREATE INDEX ix_ledger_material ON material_ledger (site, material);
CREATE INDEX ix_ledger_ref ON material_ledger (ref);

CREATE TABLE stock (
    site TEXT NOT NULL,
    material TEXT NOT NULL,
    qty_g BIGINT NOT NULL,
    PRIMARY KEY (site, material),
    FOREIGN KEY (site, material) REFERENCES materials (site, code)
);
