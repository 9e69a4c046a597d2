-- The per-boot token of each host's latest netboot (package pxe mints it
-- and reports its SHA-256 on the http.script event; the token itself is
-- never sent to the control plane). The booted image's agent presents the
-- token; the API checks it against this hash. An older boot's event never
-- replaces a newer boot's hash.
CREATE TABLE boot_tokens (
	host_id   uuid PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
	sha256    bytea NOT NULL CHECK (length(sha256) = 32),
	issued_at timestamptz NOT NULL
);
