-- The API's resources (package api, DESIGN.md section 2): the location tree
-- below regions, hosts and their MACs, images, projects with their quotas,
-- guests and placement groups, users and tokens, alert rules and the audit
-- log. Every mutable row has a version column for optimistic updates (ETag
-- and If-Match); names follow the DNS label rule of regions.

CREATE TABLE zones (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	region_id   uuid NOT NULL REFERENCES regions (id) ON DELETE RESTRICT,
	name        text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	UNIQUE (region_id, name)
);
CREATE INDEX zones_page ON zones (name, id);

CREATE TABLE racks (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	zone_id     uuid NOT NULL REFERENCES zones (id) ON DELETE RESTRICT,
	name        text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	positions   int NOT NULL DEFAULT 42 CHECK (positions BETWEEN 1 AND 100),
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	UNIQUE (zone_id, name)
);
CREATE INDEX racks_page ON racks (name, id);

CREATE TABLE images (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
	checksum    text NOT NULL CHECK (checksum ~ '^sha256:[0-9a-f]{64}$'),
	format      text NOT NULL CHECK (format IN ('raw', 'qcow2')),
	roles       text[] NOT NULL DEFAULT '{}' CHECK (roles <@ ARRAY['bm', 'kvm', 'docker']),
	boot        jsonb NOT NULL DEFAULT '{}',
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hosts (
	id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	rack_id             uuid REFERENCES racks (id) ON DELETE RESTRICT,
	position            int NOT NULL DEFAULT 0 CHECK (position BETWEEN 0 AND 100),
	role                text NOT NULL DEFAULT '' CHECK (role IN ('', 'bm', 'kvm', 'docker')),
	image_id            uuid REFERENCES images (id) ON DELETE RESTRICT,
	state               text NOT NULL DEFAULT 'discovered' CHECK (state IN ('discovered', 'inspecting',
	                    'available', 'provisioning', 'ready', 'draining', 'maintenance', 'deprovisioning', 'failed')),
	state_reason        text NOT NULL DEFAULT '',
	power               text NOT NULL DEFAULT 'unknown' CHECK (power IN ('on', 'off', 'unknown')),
	-- The BMC; the password is sealed (AES-GCM, bound to the host's ID)
	-- with the server's secret key and never leaves the database in clear.
	bmc_address         text UNIQUE CHECK (bmc_address IS NULL OR length(bmc_address) BETWEEN 1 AND 255),
	bmc_protocol        text NOT NULL DEFAULT '' CHECK (bmc_protocol IN ('', 'ipmi', 'redfish')),
	bmc_username        text NOT NULL DEFAULT '',
	bmc_password_sealed text NOT NULL DEFAULT '',
	bmc_healthy         boolean NOT NULL DEFAULT false,
	bmc_error           text NOT NULL DEFAULT '',
	inventory           jsonb,
	cpu_cores           int NOT NULL DEFAULT 0 CHECK (cpu_cores >= 0),
	memory_mib          bigint NOT NULL DEFAULT 0 CHECK (memory_mib >= 0),
	disk_gib            bigint NOT NULL DEFAULT 0 CHECK (disk_gib >= 0),
	disk_iops           bigint NOT NULL DEFAULT 0 CHECK (disk_iops >= 0),
	network_mbps        bigint NOT NULL DEFAULT 0 CHECK (network_mbps >= 0),
	-- Resources reserved for the host itself, never sold.
	overhead_cpu_cores  int NOT NULL DEFAULT 0 CHECK (overhead_cpu_cores >= 0),
	overhead_memory_mib bigint NOT NULL DEFAULT 0 CHECK (overhead_memory_mib >= 0),
	overhead_disk_gib   bigint NOT NULL DEFAULT 0 CHECK (overhead_disk_gib >= 0),
	-- A copy of the host's MACs from host_macs (kept by a trigger), so that
	-- lists read them without a subquery per host.
	macs                text[] NOT NULL DEFAULT '{}',
	maintenance         boolean NOT NULL DEFAULT false,
	labels              jsonb NOT NULL DEFAULT '{}',
	version             bigint NOT NULL DEFAULT 1,
	created_at          timestamptz NOT NULL DEFAULT now(),
	updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hosts_page ON hosts (name, id);
CREATE INDEX hosts_state ON hosts (state, name, id);
CREATE INDEX hosts_rack ON hosts (rack_id) WHERE rack_id IS NOT NULL;
CREATE INDEX hosts_labels ON hosts USING gin (labels jsonb_path_ops);

-- A MAC belongs to at most one host; the boot service finds hosts by MAC.
CREATE TABLE host_macs (
	mac     macaddr PRIMARY KEY,
	host_id uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
	idx     int NOT NULL DEFAULT 0
);
CREATE INDEX host_macs_host ON host_macs (host_id);

CREATE FUNCTION host_macs_copy() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	h uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.host_id ELSE NEW.host_id END;
BEGIN
	UPDATE hosts SET macs = ARRAY(SELECT m.mac::text FROM host_macs m WHERE m.host_id = h ORDER BY m.idx, m.mac)
	WHERE id = h;
	RETURN NULL;
END $$;
CREATE TRIGGER host_macs_copy AFTER INSERT OR DELETE OR UPDATE ON host_macs
	FOR EACH ROW EXECUTE FUNCTION host_macs_copy();

CREATE TABLE projects (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	description text NOT NULL DEFAULT '',
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A project's lease contract: what is reserved for it and what its guests
-- use. The used columns are kept by triggers on guests, and the checks make
-- the database refuse a guest that would exceed the reservation, whoever
-- writes it.
CREATE TABLE quotas (
	project_id          uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
	reserved_vcpu       int NOT NULL DEFAULT 0 CHECK (reserved_vcpu >= 0),
	reserved_memory_mib bigint NOT NULL DEFAULT 0 CHECK (reserved_memory_mib >= 0),
	reserved_disk_gib   bigint NOT NULL DEFAULT 0 CHECK (reserved_disk_gib >= 0),
	reserved_hosts      int NOT NULL DEFAULT 0 CHECK (reserved_hosts >= 0),
	used_vcpu           int NOT NULL DEFAULT 0,
	used_memory_mib     bigint NOT NULL DEFAULT 0,
	used_disk_gib       bigint NOT NULL DEFAULT 0,
	used_hosts          int NOT NULL DEFAULT 0,
	version             bigint NOT NULL DEFAULT 1,
	updated_at          timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT quota_exceeded_vcpu CHECK (used_vcpu <= reserved_vcpu),
	CONSTRAINT quota_exceeded_memory CHECK (used_memory_mib <= reserved_memory_mib),
	CONSTRAINT quota_exceeded_disk CHECK (used_disk_gib <= reserved_disk_gib),
	CONSTRAINT quota_exceeded_hosts CHECK (used_hosts <= reserved_hosts)
);

CREATE FUNCTION projects_quota_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO quotas (project_id) VALUES (NEW.id);
	RETURN NEW;
END $$;
CREATE TRIGGER projects_quota AFTER INSERT ON projects
	FOR EACH ROW EXECUTE FUNCTION projects_quota_row();

CREATE TABLE placement_groups (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
	name        text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	policy      text NOT NULL CHECK (policy IN ('affinity', 'anti-affinity')),
	hard        boolean NOT NULL DEFAULT false,
	scope       text NOT NULL DEFAULT 'host' CHECK (scope IN ('host', 'rack', 'zone')),
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	UNIQUE (project_id, name)
);
CREATE INDEX placement_groups_page ON placement_groups (name, id);

CREATE TABLE guests (
	id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id         uuid NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
	name               text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	kind               text NOT NULL CHECK (kind IN ('vm', 'container', 'bm')),
	vcpu               int NOT NULL CHECK (vcpu >= 0),
	memory_mib         bigint NOT NULL CHECK (memory_mib >= 0),
	disk_gib           bigint NOT NULL CHECK (disk_gib >= 0),
	image_id           uuid NOT NULL REFERENCES images (id) ON DELETE RESTRICT,
	zone_id            uuid REFERENCES zones (id) ON DELETE RESTRICT,
	selector           jsonb NOT NULL DEFAULT '{}',
	placement_group_id uuid REFERENCES placement_groups (id) ON DELETE RESTRICT,
	ha                 text NOT NULL DEFAULT 'none' CHECK (ha IN ('none', 'restart')),
	state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'creating', 'running',
	                   'stopped', 'deleting', 'failed')),
	host_id            uuid REFERENCES hosts (id) ON DELETE RESTRICT,
	handle             text NOT NULL DEFAULT '',
	labels             jsonb NOT NULL DEFAULT '{}',
	version            bigint NOT NULL DEFAULT 1,
	created_at         timestamptz NOT NULL DEFAULT now(),
	updated_at         timestamptz NOT NULL DEFAULT now(),
	UNIQUE (project_id, name)
);
CREATE INDEX guests_page ON guests (name, id);
CREATE INDEX guests_project ON guests (project_id, name, id);
CREATE INDEX guests_host ON guests (host_id) WHERE host_id IS NOT NULL;
CREATE INDEX guests_labels ON guests USING gin (labels jsonb_path_ops);

-- Guests use their project's quota from the moment they are asked for until
-- their row is deleted: a bare-metal guest uses a whole host.
CREATE FUNCTION guests_quota_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		UPDATE quotas SET used_vcpu = used_vcpu - OLD.vcpu, used_memory_mib = used_memory_mib - OLD.memory_mib,
			used_disk_gib = used_disk_gib - OLD.disk_gib, used_hosts = used_hosts - (OLD.kind = 'bm')::int
		WHERE project_id = OLD.project_id;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		UPDATE quotas SET used_vcpu = used_vcpu + NEW.vcpu, used_memory_mib = used_memory_mib + NEW.memory_mib,
			used_disk_gib = used_disk_gib + NEW.disk_gib, used_hosts = used_hosts + (NEW.kind = 'bm')::int
		WHERE project_id = NEW.project_id;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER guests_quota AFTER INSERT OR DELETE OR UPDATE OF project_id, kind, vcpu, memory_mib, disk_gib ON guests
	FOR EACH ROW EXECUTE FUNCTION guests_quota_use();

CREATE TABLE users (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$'),
	email       text NOT NULL DEFAULT '' CHECK (length(email) <= 254),
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Tokens: only the SHA-256 of the secret is stored; prefix is the secret's
-- first characters, shown to tell tokens apart.
CREATE TABLE tokens (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name         text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$'),
	role         text NOT NULL CHECK (role IN ('admin', 'operator', 'member', 'viewer')),
	hash         bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
	prefix       text NOT NULL,
	expires_at   timestamptz,
	labels       jsonb NOT NULL DEFAULT '{}',
	version      bigint NOT NULL DEFAULT 1,
	created_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (user_id, name)
);
CREATE INDEX tokens_page ON tokens (name, id);

CREATE TABLE token_projects (
	token_id   uuid NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
	project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	PRIMARY KEY (token_id, project_id)
);

CREATE TABLE alert_rules (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	description text NOT NULL DEFAULT '',
	expr        text NOT NULL CHECK (length(expr) BETWEEN 1 AND 4096),
	op          text NOT NULL CHECK (op IN ('>', '>=', '<', '<=', '==', '!=')),
	threshold   double precision NOT NULL,
	for_seconds bigint NOT NULL DEFAULT 0 CHECK (for_seconds BETWEEN 0 AND 86400),
	severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
	scope       text NOT NULL CHECK (scope IN ('fleet', 'zone', 'rack', 'host', 'project')),
	scope_id    uuid,
	labels      jsonb NOT NULL DEFAULT '{}',
	version     bigint NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	CHECK ((scope = 'fleet') = (scope_id IS NULL))
);

-- The audit log: one row per change, written in the change's transaction;
-- refused or failed attempts are written on their own.
CREATE TABLE audit_events (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at         timestamptz NOT NULL DEFAULT now(),
	actor      text NOT NULL,
	token_id   uuid,
	action     text NOT NULL,
	target     text NOT NULL DEFAULT '',
	project_id uuid,
	outcome    text NOT NULL,
	request_id text NOT NULL DEFAULT '',
	detail     text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_project ON audit_events (project_id, id) WHERE project_id IS NOT NULL;
CREATE INDEX audit_events_target ON audit_events (target, id);

-- Which project (if any) a task submitted through the API belongs to, so
-- that project members see only their tasks.
CREATE TABLE task_owners (
	task_id    uuid PRIMARY KEY,
	project_id uuid REFERENCES projects (id) ON DELETE SET NULL,
	actor      text NOT NULL DEFAULT ''
);
CREATE INDEX task_owners_project ON task_owners (project_id) WHERE project_id IS NOT NULL;
