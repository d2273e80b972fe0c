-- The PostgreSQL schema: the same tables as SQLite's migrations 0001-0003, in one step
-- (this backend starts at that schema). Specs and event details stay JSON text, as in
-- SQLite, so a record reads back byte for byte and `bootplane migrate` copies it as is.
CREATE TABLE machines (
    name                  TEXT PRIMARY KEY,
    spec                  TEXT NOT NULL,
    state                 TEXT NOT NULL,
    uuid                  TEXT,
    install_attempts      INTEGER NOT NULL DEFAULT 0,
    credential_generation INTEGER NOT NULL DEFAULT 0,
    observed              TEXT NOT NULL DEFAULT '{}',
    last_seen             TIMESTAMPTZ,
    created               TIMESTAMPTZ NOT NULL,
    updated               TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX machines_uuid ON machines(uuid) WHERE uuid IS NOT NULL;
CREATE INDEX machines_state_seen ON machines(state, last_seen);
CREATE INDEX machines_bundle ON machines(((spec::jsonb) ->> 'bundle'));

CREATE TABLE machine_macs (
    mac     TEXT PRIMARY KEY,
    machine TEXT NOT NULL REFERENCES machines(name) ON DELETE CASCADE
);
CREATE INDEX machine_macs_machine ON machine_macs(machine);

CREATE TABLE bundles (
    name     TEXT PRIMARY KEY,
    spec     TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    created  TIMESTAMPTZ NOT NULL
);
CREATE TABLE bundle_revisions (
    name     TEXT NOT NULL,
    revision INTEGER NOT NULL,
    spec     TEXT NOT NULL,
    created  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, revision)
);

CREATE TABLE clusters (
    name    TEXT PRIMARY KEY,
    spec    TEXT NOT NULL,
    updated TIMESTAMPTZ NOT NULL
);

CREATE TABLE templates (
    name   TEXT PRIMARY KEY,
    butane TEXT NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    time    TIMESTAMPTZ NOT NULL,
    machine TEXT,
    kind    TEXT NOT NULL,
    source  TEXT,
    detail  TEXT NOT NULL
);
CREATE INDEX events_machine ON events(machine, id);

CREATE TABLE leases (
    ip       TEXT PRIMARY KEY,
    mac      TEXT NOT NULL,
    state    TEXT NOT NULL,
    expires  BIGINT NOT NULL,
    hostname TEXT
);
CREATE INDEX leases_mac ON leases(mac);
