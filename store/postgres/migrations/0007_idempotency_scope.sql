-- patchd schema 7: an idempotency record names its client (scope), so that
-- the records of one client can be bounded, oldest deleted first, and the
-- seq of the version it was committed with, so that a replay rebuilds its
-- answer from that version instead of keeping a copy of the body. Records
-- written before have the empty scope and seq 0. The key's primary key
-- already makes the insert of a record a claim: a second write with a live
-- key fails.

ALTER TABLE idempotency_keys
    ADD COLUMN scope bytea NOT NULL DEFAULT '',
    ADD COLUMN seq bigint NOT NULL DEFAULT 0;

-- A client's records in expiry order, to find those past its bound.
CREATE INDEX idempotency_keys_scope ON idempotency_keys (scope, expires_ns, key);
