-- Bundles are replaceable: a changed definition becomes a new revision. Earlier ones
-- stay readable, so a machine keeps the files of the revision it started installing.
ALTER TABLE bundles ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
CREATE TABLE bundle_revisions (
    name     TEXT NOT NULL,
    revision INTEGER NOT NULL,
    spec     TEXT NOT NULL,
    created  TEXT NOT NULL,
    PRIMARY KEY (name, revision)
);
