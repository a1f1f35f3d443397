-- patchd schema 16: presence sessions, shared by every replica. They are
-- not data: the table is unlogged (lost with a crash, never replicated,
-- never dumped), each row lives until expires unless renewed, and every
-- replica deletes expired rows.

CREATE UNLOGGED TABLE presence (
    collection text NOT NULL,
    id         text NOT NULL,
    session    text NOT NULL,
    client     text NOT NULL,
    actor      text,
    state      text NOT NULL,
    expires    timestamptz NOT NULL,
    PRIMARY KEY (collection, id, session)
);

CREATE INDEX presence_expires ON presence (expires);
CREATE INDEX presence_client ON presence (client, expires);
