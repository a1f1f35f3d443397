-- patchd schema 17: the database's id, written once, random. Change log
-- cursors carry its first bytes, so that a cursor of another database (a
-- restore, an import into a new database at the same URL) is known for
-- one rather than read as a position of this database's log.

CREATE TABLE patchd_meta (
    one boolean PRIMARY KEY DEFAULT true CHECK (one), -- a single row
    id  bytea   NOT NULL
);

INSERT INTO patchd_meta (id)
    VALUES (decode(md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text), 'hex'));
