-- The availability controller fences a host in service that died
-- (host.fence): the host is failed with reason fenced, having failed in
-- the state it was in (ready, draining or maintenance).
ALTER TABLE hosts DROP CONSTRAINT hosts_failure_reason_check,
	ADD CONSTRAINT hosts_failure_reason_check CHECK (failure_reason IN ('', 'bmc_unreachable', 'bmc_refused',
		'no_dhcp', 'no_tftp', 'no_callback', 'agent_timeout', 'no_disk', 'disk_too_small', 'download_failed',
		'checksum_mismatch', 'disk_write', 'first_boot_timeout', 'role_unreachable', 'fenced', 'internal'));
ALTER TABLE hosts DROP CONSTRAINT hosts_failed_in_check,
	ADD CONSTRAINT hosts_failed_in_check CHECK (failed_in IN ('', 'inspecting', 'provisioning',
		'deprovisioning', 'draining', 'ready', 'maintenance'));
