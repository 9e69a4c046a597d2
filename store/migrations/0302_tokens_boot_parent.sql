-- Tokens: the boot role (a boot service's narrow credential), and the
-- token that minted each token. Revoking a token revokes every token minted
-- from it (ON DELETE CASCADE, transitively), and a token never outlives
-- its parent: the trigger caps expires_at at the parent's, whatever the
-- caller asked for, so that no code path can forget.
ALTER TABLE tokens DROP CONSTRAINT tokens_role_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_role_check
	CHECK (role IN ('admin', 'operator', 'member', 'viewer', 'boot'));

ALTER TABLE tokens ADD COLUMN parent_id uuid REFERENCES tokens (id) ON DELETE CASCADE;
CREATE INDEX tokens_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;

CREATE FUNCTION tokens_cap_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	parent_expiry timestamptz;
BEGIN
	IF NEW.parent_id IS NULL THEN
		RETURN NEW;
	END IF;
	SELECT expires_at INTO parent_expiry FROM tokens WHERE id = NEW.parent_id;
	IF parent_expiry IS NOT NULL AND (NEW.expires_at IS NULL OR NEW.expires_at > parent_expiry) THEN
		NEW.expires_at := parent_expiry;
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER tokens_cap_expiry BEFORE INSERT OR UPDATE OF expires_at, parent_id ON tokens
	FOR EACH ROW EXECUTE FUNCTION tokens_cap_expiry();
