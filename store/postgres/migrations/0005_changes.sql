-- patchd schema 5: the collection change log.
--
-- Every version gets a position, pos, and a collection's change log is its
-- versions in (pos, id, seq) order. pos is the writing transaction's id
-- (pg_current_xact_id(), a 64-bit xid8), raised to the position of the
-- document's previous version when that is greater, so that a document's
-- versions keep their seq order. Transaction ids are assigned before
-- commit and become visible out of order; a reader therefore reads only
-- positions below its snapshot's xmin (pg_snapshot_xmin): every
-- transaction with a smaller id has ended, so nothing will ever appear
-- there again, and every position still to appear is at least that xmin.
-- No lock is held across commits, so commits of one collection still
-- share their WAL flushes.
--
-- documents.pos is the position of the document's newest version;
-- pruned_pos and pruned_seq are those of its newest pruned version, so
-- that a reader knows when a change after its cursor is gone.
--
-- Rows that exist already keep position 0: they come before every cursor.

ALTER TABLE documents ADD COLUMN pos xid8 NOT NULL DEFAULT '0';
ALTER TABLE documents ALTER COLUMN pos SET DEFAULT pg_current_xact_id();
ALTER TABLE documents ADD COLUMN pruned_pos xid8 NOT NULL DEFAULT '0';
ALTER TABLE documents ADD COLUMN pruned_seq bigint NOT NULL DEFAULT 0;

ALTER TABLE document_versions ADD COLUMN pos xid8 NOT NULL DEFAULT '0';
ALTER TABLE document_versions ALTER COLUMN pos SET DEFAULT pg_current_xact_id();

-- Store.Changes: a collection's log in order.
CREATE INDEX document_versions_changes ON document_versions (collection, pos, id, seq);
-- Store.Changes: documents whose pruned versions fall in a range of the log.
CREATE INDEX documents_pruned ON documents (collection, pruned_pos, id, pruned_seq);
