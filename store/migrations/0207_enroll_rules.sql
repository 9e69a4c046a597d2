-- Auto-enroll rules: the first rule (lowest priority) whose match fits a
-- freshly inspected host sets its role, image, labels and rack, and may
-- provision it. The references (the image to install, the racks matched
-- and set) are columns with foreign keys, so that an image or a rack in
-- use by a rule cannot be deleted; the rest of the match (MAC prefix, DMI
-- globs, inventory bounds, firmware) is jsonb, read only by the pure
-- rackcloud.MatchEnrollRules. A host records the rule that matched it and
-- the verdicts of the rules considered then.
CREATE TABLE enroll_rules (
	id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	priority      int NOT NULL UNIQUE CHECK (priority BETWEEN 0 AND 1000000),
	match         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(match) = 'object'),
	match_rack_id uuid REFERENCES racks (id) ON DELETE RESTRICT,
	role          text NOT NULL DEFAULT '' CHECK (role IN ('', 'bm', 'kvm', 'docker')),
	image_id      uuid REFERENCES images (id) ON DELETE RESTRICT,
	set_labels    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(set_labels) = 'object'),
	set_rack_id   uuid REFERENCES racks (id) ON DELETE RESTRICT,
	provision     boolean NOT NULL DEFAULT false,
	labels        jsonb NOT NULL DEFAULT '{}',
	version       bigint NOT NULL DEFAULT 1,
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now(),
	CHECK (NOT provision OR (role <> '' AND image_id IS NOT NULL))
);

ALTER TABLE hosts
	ADD COLUMN enrolled_by_rule uuid REFERENCES enroll_rules (id) ON DELETE SET NULL,
	ADD COLUMN enroll_verdicts jsonb CHECK (enroll_verdicts IS NULL OR jsonb_typeof(enroll_verdicts) = 'array');
CREATE INDEX hosts_enrolled_by_rule ON hosts (enrolled_by_rule) WHERE enrolled_by_rule IS NOT NULL;
