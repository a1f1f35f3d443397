-- patchd schema 3: who made each version, in which request, and which
-- version a revert undid. Versions written before have none: '' and 0.
-- Defaults are constants, so adding the columns rewrites no rows.

ALTER TABLE document_versions
    ADD COLUMN actor      text   NOT NULL DEFAULT '',  -- the token's name, or ''
    ADD COLUMN request_id text   NOT NULL DEFAULT '',  -- the request's X-Request-Id, or ''
    ADD COLUMN reverts    bigint NOT NULL DEFAULT 0;   -- the seq a revert version undid, or 0
