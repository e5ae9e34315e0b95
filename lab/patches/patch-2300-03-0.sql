-- Cold patch: document the demo table.
COMMENT ON TABLE fdt_item IS 'Demo items written by the lab''s app servers';
COMMENT ON COLUMN fdt_item.author IS 'Who wrote the item (added by patch-2300-01-0)';
