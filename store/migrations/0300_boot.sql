-- Boot events (package pxe reports them to POST /v1/boot/events): every
-- step of every network boot, the host's boot timeline. A boot service
-- resends a batch it is not sure was stored, so an event is stored once
-- per (mac, kind, at); the MAC is NULL when the boot service could not
-- tell the client's MAC (a TFTP read from an address it never leased).
CREATE TABLE boot_events (
	id          bigserial PRIMARY KEY,
	mac         macaddr,
	host_id     uuid REFERENCES hosts (id) ON DELETE SET NULL,
	kind        text NOT NULL CHECK (kind ~ '^[a-z]+(\.[a-z]+)?$'),
	client      text NOT NULL DEFAULT '',
	ip          text NOT NULL DEFAULT '',
	file        text NOT NULL DEFAULT '',
	bytes       bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
	duration_ns bigint NOT NULL DEFAULT 0 CHECK (duration_ns >= 0),
	state       text NOT NULL DEFAULT '',
	cached      boolean NOT NULL DEFAULT false,
	detail      text NOT NULL DEFAULT '',
	error       text NOT NULL DEFAULT '',
	data        jsonb,
	at          timestamptz NOT NULL,
	received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX boot_events_once ON boot_events (mac, kind, at) NULLS NOT DISTINCT;
CREATE INDEX boot_events_mac ON boot_events (mac, at);
CREATE INDEX boot_events_host ON boot_events (host_id, id) WHERE host_id IS NOT NULL;
