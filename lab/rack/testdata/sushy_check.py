"""Drives a rackcloud lab Redfish BMC with OpenStack's sushy (Debian's
python3-sushy) and prints what it saw as JSON. Usage:
sushy_check.py URL USER PASSWORD CAFILE STEP
STEP is "read" (power state, boot, sensors, manager, NIC MACs), "pxe-on" (boot
override Pxe once, then reset On) or "off" (reset ForceOff)."""
import json
import sys

import sushy

url, user, password, cafile, step = sys.argv[1:6]
root = sushy.Sushy(url + "/redfish/v1", username=user, password=password, verify=cafile)
system = root.get_system("/redfish/v1/Systems/1")
out = {}
if step == "pxe-on":
    system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
    system.refresh()
    out["boot_target"] = str(system.boot.target)
    system.reset_system(sushy.RESET_ON)
elif step == "off":
    system.reset_system(sushy.RESET_FORCE_OFF)
system.refresh()
out["power_state"] = str(system.power_state)
out["serial"] = system.serial_number
# What Ironic's redfish inspection reads: {MAC: state} of healthy NICs.
out["nics"] = {mac: str(state) for mac, state in system.ethernet_interfaces.summary.items()}
chassis = root.get_chassis("/redfish/v1/Chassis/1")
thermal = chassis.thermal
out["temperature_c"] = thermal.temperatures[0].reading_celsius
out["fan_rpm"] = thermal.fans[0].reading
out["watts"] = chassis.power.power_supplies[0].last_power_output_watts
manager = root.get_manager("/redfish/v1/Managers/1")
out["manager_firmware"] = manager.firmware_version
out["manager_type"] = str(manager.manager_type)
print(json.dumps(out))
