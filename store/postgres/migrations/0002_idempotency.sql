-- patchd schema 2: answers to writes made with an Idempotency-Key, stored in
-- the same transaction as the write they answer, so that a record exists
-- exactly when its write does. The store does not interpret key or value.

CREATE TABLE idempotency_keys (
    key        bytea PRIMARY KEY,  -- any bytes: the caller chooses them
    value      bytea NOT NULL,
    expires_ns bigint NOT NULL  -- Unix nanoseconds; an expired record is never returned
);

CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_ns);
