-- Cold patch: a table of tags on items.
CREATE TABLE fdt_item_tag (
    item bigint NOT NULL REFERENCES fdt_item (id) ON DELETE CASCADE,
    tag text NOT NULL,
    PRIMARY KEY (item, tag)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON fdt_item_tag TO fdt_app;
