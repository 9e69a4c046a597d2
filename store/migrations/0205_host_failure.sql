-- Why a failed host failed, typed (rackcloud.HostFailure): the reason a
-- script can match, the task and step that failed, and the state it failed
-- in (where `host retry` resumes). Set by store.TransitionHost into
-- failed, cleared by every other transition.
ALTER TABLE hosts
	ADD COLUMN failure_reason text NOT NULL DEFAULT '' CHECK (failure_reason IN ('', 'bmc_unreachable', 'bmc_refused',
		'no_dhcp', 'no_tftp', 'no_callback', 'agent_timeout', 'no_disk', 'disk_too_small', 'download_failed',
		'checksum_mismatch', 'disk_write', 'first_boot_timeout', 'role_unreachable', 'internal')),
	ADD COLUMN failure_step text NOT NULL DEFAULT '',
	ADD COLUMN failure_task uuid,
	ADD COLUMN failed_in text NOT NULL DEFAULT '' CHECK (failed_in IN ('', 'inspecting', 'provisioning',
		'deprovisioning', 'draining'));
-- A host failed before reasons were kept failed for an unknown reason.
UPDATE hosts SET failure_reason = 'internal' WHERE state = 'failed';
ALTER TABLE hosts ADD CONSTRAINT hosts_failure_only_when_failed CHECK ((state = 'failed') = (failure_reason <> ''));
