-- Installing hosts: images say how large the disk they hold is and may be
-- raw+zstd (imagefmt); a provisioned host has an install record (its host
-- token's hash and its sealed host config, served to its installer), the
-- endpoint of its role's daemon, and the time of its last heartbeat; the
-- host CA that issues the hosts' TLS certificates (and rackcloud's client
-- certificate) is one row, its keys sealed.
ALTER TABLE images DROP CONSTRAINT images_format_check;
ALTER TABLE images ADD CONSTRAINT images_format_check CHECK (format IN ('raw', 'raw+zstd', 'qcow2'));
ALTER TABLE images ADD COLUMN size bigint NOT NULL DEFAULT 0 CHECK (size >= 0);

ALTER TABLE hosts
	ADD COLUMN endpoint text NOT NULL DEFAULT '' CHECK (length(endpoint) <= 512),
	ADD COLUMN last_heartbeat timestamptz;

CREATE TABLE host_installs (
	host_id       uuid PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
	task_id       uuid NOT NULL,
	image_id      uuid NOT NULL REFERENCES images (id) ON DELETE RESTRICT,
	token_sha256  bytea NOT NULL CHECK (length(token_sha256) = 32),
	config_sealed text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE host_ca (
	id                int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	cert_pem          text NOT NULL,
	key_sealed        text NOT NULL,
	client_cert_pem   text NOT NULL,
	client_key_sealed text NOT NULL,
	created_at        timestamptz NOT NULL DEFAULT now()
);
