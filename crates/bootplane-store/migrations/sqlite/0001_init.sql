-- Machines: the declared spec as JSON plus the columns lookups and transitions need.
CREATE TABLE machines (
    name                  TEXT PRIMARY KEY,
    spec                  TEXT NOT NULL,
    state                 TEXT NOT NULL,
    uuid                  TEXT,
    install_attempts      INTEGER NOT NULL DEFAULT 0,
    credential_generation INTEGER NOT NULL DEFAULT 0,
    observed              TEXT NOT NULL DEFAULT '{}',
    last_seen             TEXT,
    created               TEXT NOT NULL,
    updated               TEXT NOT NULL
);
CREATE UNIQUE INDEX machines_uuid ON machines(uuid) WHERE uuid IS NOT NULL;
CREATE INDEX machines_state_seen ON machines(state, last_seen);

-- One row per registered MAC (normalised aa:bb:..): MAC lookups are one index probe.
CREATE TABLE machine_macs (
    mac     TEXT PRIMARY KEY,
    machine TEXT NOT NULL REFERENCES machines(name) ON DELETE CASCADE
);
CREATE INDEX machine_macs_machine ON machine_macs(machine);

CREATE TABLE bundles (
    name    TEXT PRIMARY KEY,
    spec    TEXT NOT NULL,
    created TEXT NOT NULL
);

CREATE TABLE clusters (
    name    TEXT PRIMARY KEY,
    spec    TEXT NOT NULL,
    updated TEXT NOT NULL
);

CREATE TABLE templates (
    name   TEXT PRIMARY KEY,
    butane TEXT NOT NULL
);

-- Server-wide values: applied config sections, generated secrets.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    time    TEXT NOT NULL,
    machine TEXT,
    kind    TEXT NOT NULL,
    source  TEXT,
    detail  TEXT NOT NULL
);
CREATE INDEX events_machine ON events(machine, id);
