-- DHCP leases (full mode). One row per address; a MAC holds at most one.
CREATE TABLE leases (
    ip       TEXT PRIMARY KEY,
    mac      TEXT NOT NULL,
    state    TEXT NOT NULL,
    expires  INTEGER NOT NULL,
    hostname TEXT
);
CREATE INDEX leases_mac ON leases(mac);
