-- patchd schema 1: documents, their versions, and nothing that PostgreSQL
-- rewrites. Bodies are bytea, never jsonb: jsonb reorders keys and rewrites
-- numbers, and the ETag hashes the exact canonical bytes.
--
-- Names use the "C" collation so that the primary keys sort ids by bytes,
-- as the API's listing order requires, whatever the database's locale.

CREATE TABLE documents (
    collection text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    -- seq of the newest version: a put, a patch or a delete. Seqs are
    -- assigned by patchd under the row lock, dense per document.
    seq        bigint NOT NULL,
    -- The 16 bytes the ETag spells in hex; empty for a tombstone.
    etag       bytea NOT NULL,
    -- Canonical JSON, exactly the bytes the ETag hashes; empty for a tombstone.
    body       bytea NOT NULL,
    -- A deleted document keeps its row (a tombstone) so that seqs continue.
    deleted    boolean NOT NULL,
    -- Commit time of the newest version in Unix nanoseconds, as the bbolt
    -- store keeps it, so that both report the same instants
    -- (to_timestamp(updated_ns / 1e9) reads it in SQL).
    updated_ns bigint NOT NULL,
    PRIMARY KEY (collection, id)
) WITH (fillfactor = 85);

CREATE TABLE document_versions (
    collection   text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    seq          bigint NOT NULL,
    etag         bytea NOT NULL,  -- of the document after this version; empty after a delete
    kind         text NOT NULL,   -- put, json-patch, merge-patch or delete
    ops          bytea NOT NULL,  -- opaque to the store: the ops with their undo information
    rebased_from text NOT NULL,   -- the ETag the write was rebased from, or ''
    token        bytea NOT NULL,  -- per-request id: resolves a commit of unknown outcome
    at_ns        bigint NOT NULL, -- commit time in Unix nanoseconds
    PRIMARY KEY (collection, id, seq)
);

-- History.Since: the newest version with a given ETag.
CREATE INDEX document_versions_etag ON document_versions (collection, id, etag, seq DESC);
