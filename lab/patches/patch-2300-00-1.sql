-- Hot patch: an index for "newest items first", built live before the outage.
-- CREATE INDEX CONCURRENTLY cannot run in a transaction block, so this patch
-- holds nothing else.
CREATE INDEX CONCURRENTLY fdt_item_created_idx ON fdt_item (created);
