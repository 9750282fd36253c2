DROP TABLE stock;
DROP TABLE material_ledger;
DROP TABLE batches;
DROP TABLE recipe_lines;
DROP TABLE recipes;
DROP TABLE materials;
DROP TABLE sites;
