-- A host's fixed address on the provisioning network: the boot service's
-- DHCP reserves it for the host's MACs. One host per address.
ALTER TABLE hosts ADD COLUMN provisioning_ipv4 inet UNIQUE
	CHECK (family(provisioning_ipv4) = 4 AND masklen(provisioning_ipv4) = 32);
