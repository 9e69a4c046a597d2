-- Core schema: the location tree starts with regions. Every mutable row has
-- a version column for optimistic updates.
CREATE TABLE regions (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	description text NOT NULL DEFAULT '',
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);
