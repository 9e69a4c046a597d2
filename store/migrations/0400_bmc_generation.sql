-- A host's BMC credentials generation (package bmcwatch): the number of
-- changes to its BMC address, protocol, user name or sealed password. A
-- poller reads it with the credentials and records what it observed only
-- while it is unchanged (UPDATE ... WHERE bmc_generation = the one read),
-- so that a poll made with old credentials never overwrites what the new
-- ones find. A trigger keeps it, so that no writer can forget to; every
-- change also notifies channel rackcloud_bmc_changed with the host's ID,
-- which wakes the poller at once instead of at its next refresh. A
-- transaction that only seals the same passwords again under a new key
-- (store.RotateSecretKey) says so with SET LOCAL rackcloud.reseal = 'on':
-- the credentials did not change, and in-flight polls stay valid.
ALTER TABLE hosts ADD COLUMN bmc_generation bigint NOT NULL DEFAULT 0;

CREATE FUNCTION hosts_bmc_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF current_setting('rackcloud.reseal', true) = 'on'
		AND OLD.bmc_address IS NOT DISTINCT FROM NEW.bmc_address
		AND OLD.bmc_protocol IS NOT DISTINCT FROM NEW.bmc_protocol
		AND OLD.bmc_username IS NOT DISTINCT FROM NEW.bmc_username THEN
		RETURN NEW;
	END IF;
	NEW.bmc_generation := OLD.bmc_generation + 1;
	PERFORM pg_notify('rackcloud_bmc_changed', NEW.id::text);
	RETURN NEW;
END $$;
CREATE TRIGGER hosts_bmc_generation BEFORE UPDATE ON hosts
	FOR EACH ROW WHEN (OLD.bmc_address IS DISTINCT FROM NEW.bmc_address
		OR OLD.bmc_protocol IS DISTINCT FROM NEW.bmc_protocol
		OR OLD.bmc_username IS DISTINCT FROM NEW.bmc_username
		OR OLD.bmc_password_sealed IS DISTINCT FROM NEW.bmc_password_sealed)
	EXECUTE FUNCTION hosts_bmc_generation();
