-- A counter that moves with every change to what identifies a machine or decides its
-- boot: its row (name, spec, state, UUID, attempts, credential generation) and its MACs,
-- written by any process sharing the file. The boot path keeps the machines it looked up
-- in memory while the counter stands still (sqlite/mod.rs: IdentityCache). "Last seen"
-- and the observation do not move it: they change on every boot.
CREATE TABLE identity_generation (n INTEGER NOT NULL);
INSERT INTO identity_generation (n) VALUES (0);
CREATE TRIGGER machines_identity_insert AFTER INSERT ON machines
BEGIN UPDATE identity_generation SET n = n + 1; END;
CREATE TRIGGER machines_identity_delete AFTER DELETE ON machines
BEGIN UPDATE identity_generation SET n = n + 1; END;
CREATE TRIGGER machines_identity_update
AFTER UPDATE OF name, spec, state, uuid, install_attempts, credential_generation ON machines
BEGIN UPDATE identity_generation SET n = n + 1; END;
CREATE TRIGGER machine_macs_identity_insert AFTER INSERT ON machine_macs
BEGIN UPDATE identity_generation SET n = n + 1; END;
CREATE TRIGGER machine_macs_identity_delete AFTER DELETE ON machine_macs
BEGIN UPDATE identity_generation SET n = n + 1; END;
CREATE TRIGGER machine_macs_identity_update AFTER UPDATE ON machine_macs
BEGIN UPDATE identity_generation SET n = n + 1; END;
