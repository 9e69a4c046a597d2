-- Placement and guests (package vmctl, DESIGN.md sections 6 and 7).
--
-- The database is the judge of capacity: host_usage keeps, per host, what
-- its placed guests use and what it can sell (its resources less its
-- overhead, times the overcommit ratio of the host, else of its zone,
-- else 1). A trigger on guests charges a guest to its host when host_id is
-- set and refuses (SQLSTATE 23514, constraint host_full) a claim the host
-- cannot hold, or one on a host that is not ready, is in maintenance or
-- has the wrong role (constraint host_unavailable). A hard placement group
-- is checked in the same trigger under a lock on the group's row, so two
-- replicas claiming at once for one group are serialised and the second
-- sees the first (constraint placement_group). A replica placing from a
-- stale snapshot thus loses the race and tries its next candidate; it never
-- over-books. Every change of a host's usage or capacity notifies channel
-- rackcloud_placement with the host's ID, which refreshes the replicas'
-- snapshots.

ALTER TABLE images DROP CONSTRAINT images_format_check;
ALTER TABLE images ADD CONSTRAINT images_format_check
	CHECK (format IN ('raw', 'raw+zstd', 'qcow2', 'docker-archive'));

ALTER TABLE zones
	ADD COLUMN overcommit_cpu double precision CHECK (overcommit_cpu BETWEEN 0.1 AND 64),
	ADD COLUMN overcommit_memory double precision CHECK (overcommit_memory BETWEEN 0.1 AND 64),
	ADD COLUMN overcommit_disk double precision CHECK (overcommit_disk BETWEEN 0.1 AND 64);
ALTER TABLE hosts
	ADD COLUMN overcommit_cpu double precision CHECK (overcommit_cpu BETWEEN 0.1 AND 64),
	ADD COLUMN overcommit_memory double precision CHECK (overcommit_memory BETWEEN 0.1 AND 64),
	ADD COLUMN overcommit_disk double precision CHECK (overcommit_disk BETWEEN 0.1 AND 64);

ALTER TABLE placement_groups
	ADD COLUMN max_per_scope int NOT NULL DEFAULT 1 CHECK (max_per_scope BETWEEN 1 AND 10000),
	ADD COLUMN weight double precision NOT NULL DEFAULT 1 CHECK (weight BETWEEN 0 AND 100);

-- What a guest asks of placement beyond its zone, selector and group, what
-- placement said, and what its driver last saw (observed facts: they do not
-- bump the version that guards the owner's edits).
ALTER TABLE guests
	ADD COLUMN rack_id uuid REFERENCES racks (id) ON DELETE RESTRICT,
	ADD COLUMN want_host_id uuid REFERENCES hosts (id) ON DELETE SET NULL,
	ADD COLUMN constraints text[] NOT NULL DEFAULT '{}' CHECK (cardinality(constraints) <= 32),
	ADD COLUMN strategy text NOT NULL DEFAULT 'binpack' CHECK (strategy IN ('binpack', 'spread')),
	ADD COLUMN state_reason text NOT NULL DEFAULT '' CHECK (length(state_reason) <= 2000),
	ADD COLUMN placement text NOT NULL DEFAULT '' CHECK (length(placement) <= 2000),
	ADD COLUMN observed_state text NOT NULL DEFAULT '' CHECK (observed_state IN ('', 'running', 'stopped',
		'crashed', 'paused', 'missing', 'unknown')),
	ADD COLUMN observed_detail text NOT NULL DEFAULT '' CHECK (length(observed_detail) <= 500),
	ADD COLUMN observed_at timestamptz;
CREATE INDEX guests_group ON guests (placement_group_id, host_id) WHERE placement_group_id IS NOT NULL;

-- A guest's timeline of what its driver saw change (the reconciler) and
-- what rackcloud did to it.
CREATE TABLE guest_events (
	id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	guest_id uuid NOT NULL REFERENCES guests (id) ON DELETE CASCADE,
	at       timestamptz NOT NULL DEFAULT now(),
	kind     text NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,39}$'),
	detail   text NOT NULL DEFAULT '' CHECK (length(detail) <= 2000)
);
CREATE INDEX guest_events_guest ON guest_events (guest_id, id);

-- How rackcloud reaches an adopted host's daemon when the operator gave
-- its own TLS credentials (a provisioned host uses the host CA's).
CREATE TABLE host_credentials (
	host_id     uuid PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
	ca_pem      text NOT NULL DEFAULT '',
	cert_pem    text NOT NULL DEFAULT '',
	key_sealed  text NOT NULL DEFAULT '',
	server_name text NOT NULL DEFAULT '' CHECK (length(server_name) <= 253)
);

CREATE TABLE host_usage (
	host_id         uuid PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
	used_vcpu       int NOT NULL DEFAULT 0,
	used_memory_mib bigint NOT NULL DEFAULT 0,
	used_disk_gib   bigint NOT NULL DEFAULT 0,
	guests          int NOT NULL DEFAULT 0,
	cap_vcpu        int NOT NULL DEFAULT 0,
	cap_memory_mib  bigint NOT NULL DEFAULT 0,
	cap_disk_gib    bigint NOT NULL DEFAULT 0,
	-- 1 for a bare-metal host (its one guest is the whole machine), NULL
	-- for no limit.
	cap_guests      int
);

-- host_capacity is what host h can sell.
CREATE FUNCTION host_capacity(h hosts, OUT cap_vcpu int, OUT cap_memory_mib bigint, OUT cap_disk_gib bigint,
	OUT cap_guests int) LANGUAGE plpgsql STABLE AS $$
DECLARE
	z zones;
BEGIN
	SELECT zones.* INTO z FROM racks JOIN zones ON zones.id = racks.zone_id WHERE racks.id = h.rack_id;
	cap_vcpu := GREATEST(0, floor((h.cpu_cores - h.overhead_cpu_cores) * COALESCE(h.overcommit_cpu, z.overcommit_cpu, 1)));
	cap_memory_mib := GREATEST(0, floor((h.memory_mib - h.overhead_memory_mib) * COALESCE(h.overcommit_memory, z.overcommit_memory, 1)));
	cap_disk_gib := GREATEST(0, floor((h.disk_gib - h.overhead_disk_gib) * COALESCE(h.overcommit_disk, z.overcommit_disk, 1)));
	cap_guests := CASE WHEN h.role = 'bm' THEN 1 END;
END $$;

CREATE FUNCTION hosts_usage_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	c record;
BEGIN
	c := host_capacity(NEW);
	INSERT INTO host_usage (host_id, cap_vcpu, cap_memory_mib, cap_disk_gib, cap_guests)
	VALUES (NEW.id, c.cap_vcpu, c.cap_memory_mib, c.cap_disk_gib, c.cap_guests)
	ON CONFLICT (host_id) DO UPDATE SET cap_vcpu = EXCLUDED.cap_vcpu, cap_memory_mib = EXCLUDED.cap_memory_mib,
		cap_disk_gib = EXCLUDED.cap_disk_gib, cap_guests = EXCLUDED.cap_guests;
	PERFORM pg_notify('rackcloud_placement', NEW.id::text);
	RETURN NULL;
END $$;
CREATE TRIGGER hosts_usage_insert AFTER INSERT ON hosts FOR EACH ROW EXECUTE FUNCTION hosts_usage_row();
-- A change of what placement looks at (not a heartbeat or a power poll)
-- recomputes the capacity and notifies.
CREATE TRIGGER hosts_usage_update AFTER UPDATE ON hosts FOR EACH ROW
	WHEN (ROW(OLD.name, OLD.state, OLD.maintenance, OLD.role, OLD.labels, OLD.rack_id, OLD.cpu_cores, OLD.memory_mib,
		OLD.disk_gib, OLD.overhead_cpu_cores, OLD.overhead_memory_mib, OLD.overhead_disk_gib, OLD.overcommit_cpu,
		OLD.overcommit_memory, OLD.overcommit_disk, OLD.endpoint)
		IS DISTINCT FROM ROW(NEW.name, NEW.state, NEW.maintenance, NEW.role, NEW.labels, NEW.rack_id, NEW.cpu_cores,
		NEW.memory_mib, NEW.disk_gib, NEW.overhead_cpu_cores, NEW.overhead_memory_mib, NEW.overhead_disk_gib,
		NEW.overcommit_cpu, NEW.overcommit_memory, NEW.overcommit_disk, NEW.endpoint))
	EXECUTE FUNCTION hosts_usage_row();

CREATE FUNCTION zones_usage_caps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	-- Touch the zone's hosts so that their capacity is recomputed.
	UPDATE host_usage u SET cap_vcpu = c.cap_vcpu, cap_memory_mib = c.cap_memory_mib, cap_disk_gib = c.cap_disk_gib
	FROM hosts h JOIN racks r ON r.id = h.rack_id, LATERAL host_capacity(h) c
	WHERE r.zone_id = NEW.id AND u.host_id = h.id;
	PERFORM pg_notify('rackcloud_placement', h.id::text) FROM hosts h JOIN racks r ON r.id = h.rack_id WHERE r.zone_id = NEW.id;
	RETURN NULL;
END $$;
CREATE TRIGGER zones_usage_caps AFTER UPDATE OF overcommit_cpu, overcommit_memory, overcommit_disk ON zones
	FOR EACH ROW EXECUTE FUNCTION zones_usage_caps();

INSERT INTO host_usage (host_id, cap_vcpu, cap_memory_mib, cap_disk_gib, cap_guests)
SELECT h.id, c.cap_vcpu, c.cap_memory_mib, c.cap_disk_gib, c.cap_guests FROM hosts h, LATERAL host_capacity(h) c;

-- The kind of guest each host role runs.
CREATE FUNCTION guest_host_role(kind text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE kind WHEN 'vm' THEN 'kvm' WHEN 'container' THEN 'docker' WHEN 'bm' THEN 'bm' END
$$;

CREATE FUNCTION guests_host_claim() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	h hosts;
	g placement_groups;
	n int;
	other uuid;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.host_id IS NOT NULL THEN
		UPDATE host_usage SET used_vcpu = used_vcpu - OLD.vcpu, used_memory_mib = used_memory_mib - OLD.memory_mib,
			used_disk_gib = used_disk_gib - OLD.disk_gib, guests = guests - 1
		WHERE host_id = OLD.host_id;
		PERFORM pg_notify('rackcloud_placement', OLD.host_id::text);
	END IF;
	IF TG_OP = 'DELETE' OR NEW.host_id IS NULL THEN
		RETURN NULL;
	END IF;
	-- A guest staying on its host (a flavor change) is charged again
	-- without the availability checks; one moving to a host is a claim.
	IF TG_OP = 'INSERT' OR OLD.host_id IS DISTINCT FROM NEW.host_id THEN
		SELECT * INTO h FROM hosts WHERE id = NEW.host_id FOR SHARE;
		IF h.state <> 'ready' OR h.maintenance OR h.role IS DISTINCT FROM guest_host_role(NEW.kind) THEN
			RAISE EXCEPTION 'host % cannot take a % guest (state %, role %, maintenance %)',
				h.name, NEW.kind, h.state, NULLIF(h.role, ''), h.maintenance
				USING ERRCODE = 'check_violation', CONSTRAINT = 'host_unavailable';
		END IF;
		IF NEW.placement_group_id IS NOT NULL THEN
			SELECT * INTO g FROM placement_groups WHERE id = NEW.placement_group_id FOR UPDATE;
			IF g.hard THEN
				IF g.policy = 'anti-affinity' THEN
					SELECT count(*) INTO n FROM guests o JOIN hosts oh ON oh.id = o.host_id
					LEFT JOIN racks orr ON orr.id = oh.rack_id
					WHERE o.placement_group_id = g.id AND o.id <> NEW.id AND CASE g.scope
						WHEN 'host' THEN o.host_id = h.id
						WHEN 'rack' THEN oh.rack_id = h.rack_id
						ELSE orr.zone_id = (SELECT zone_id FROM racks WHERE id = h.rack_id) END;
					IF n >= g.max_per_scope THEN
						RAISE EXCEPTION 'hard anti-affinity: group % already has % guest(s) in this % (at most %)',
							g.name, n, g.scope, g.max_per_scope
							USING ERRCODE = 'check_violation', CONSTRAINT = 'placement_group';
					END IF;
				ELSE
					SELECT o.host_id INTO other FROM guests o WHERE o.placement_group_id = g.id AND o.id <> NEW.id
						AND o.host_id IS NOT NULL AND NOT EXISTS (
							SELECT 1 FROM hosts oh LEFT JOIN racks orr ON orr.id = oh.rack_id WHERE oh.id = o.host_id AND CASE g.scope
							WHEN 'host' THEN oh.id = h.id
							WHEN 'rack' THEN oh.rack_id = h.rack_id
							ELSE orr.zone_id = (SELECT zone_id FROM racks WHERE id = h.rack_id) END)
					LIMIT 1;
					IF other IS NOT NULL THEN
						RAISE EXCEPTION 'hard affinity: group % has guests in another %', g.name, g.scope
							USING ERRCODE = 'check_violation', CONSTRAINT = 'placement_group';
					END IF;
				END IF;
			END IF;
		END IF;
	END IF;
	UPDATE host_usage SET used_vcpu = used_vcpu + NEW.vcpu, used_memory_mib = used_memory_mib + NEW.memory_mib,
		used_disk_gib = used_disk_gib + NEW.disk_gib, guests = guests + 1
	WHERE host_id = NEW.host_id
		AND (used_vcpu + NEW.vcpu <= cap_vcpu AND used_memory_mib + NEW.memory_mib <= cap_memory_mib
			AND used_disk_gib + NEW.disk_gib <= cap_disk_gib AND (cap_guests IS NULL OR guests + 1 <= cap_guests)
			OR TG_OP = 'UPDATE' AND OLD.host_id IS NOT DISTINCT FROM NEW.host_id);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'host % cannot hold % vcpu, % MiB, % GiB more', NEW.host_id, NEW.vcpu, NEW.memory_mib, NEW.disk_gib
			USING ERRCODE = 'check_violation', CONSTRAINT = 'host_full';
	END IF;
	PERFORM pg_notify('rackcloud_placement', NEW.host_id::text);
	RETURN NULL;
END $$;
CREATE TRIGGER guests_host_claim AFTER INSERT OR DELETE OR UPDATE OF host_id, kind, vcpu, memory_mib, disk_gib ON guests
	FOR EACH ROW EXECUTE FUNCTION guests_host_claim();

-- Guests already placed before this migration are charged.
UPDATE host_usage u SET used_vcpu = s.vcpu, used_memory_mib = s.mem, used_disk_gib = s.disk, guests = s.n
FROM (SELECT host_id, sum(vcpu) AS vcpu, sum(memory_mib) AS mem, sum(disk_gib) AS disk, count(*) AS n
	FROM guests WHERE host_id IS NOT NULL GROUP BY host_id) s
WHERE u.host_id = s.host_id;
