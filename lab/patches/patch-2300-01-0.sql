-- Cold patch: items get an optional author.
-- A nullable column with no default is a catalog-only change: instant.
ALTER TABLE fdt_item ADD COLUMN author text;
