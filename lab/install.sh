#!/bin/sh
# Installs the Debian packages in lab/debian-packages.txt that are missing.
# Idempotent and quiet when everything is there. Must run as root.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pkgs=$(grep -v '^\s*#' "$here/debian-packages.txt" | grep -v '^\s*$')
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "lab/install.sh: missing packages:$missing; run as root" >&2
	exit 1
fi
# Daemons are started by the lab harness, never by apt.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
echo "lab/install.sh: installing$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
