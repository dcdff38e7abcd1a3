#!/usr/bin/env bash
# A real install of a .deb, maintainer scripts included, into a Debian 12 chroot made by
# debootstrap (needs root and Debian's archive): apt resolves its Depends, postinst creates
# the gridwatch user and the state directory and enables the unit; then `gridwatch check`
# runs as that user, and a purge removes everything. Run by hand (about 3 minutes); CI's
# package test covers the package contents with `dpkg -x`.
#   cross/test-install.sh [dist/gridwatch_<version>-1_amd64.deb]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deb=${1:-$(ls -t "$root"/dist/gridwatch_*_amd64.deb | head -n1)}
chroot_dir="$root/.local/cross/install-chroot"
say() { printf '\033[1mcross/test-install:\033[0m %s\n' "$*" >&2; }
in_chroot() { chroot "$chroot_dir" sh -c "$1"; }

if [ ! -x "$chroot_dir/usr/bin/apt-get" ]; then
  say "debootstrap bookworm (minbase) into $chroot_dir"
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  rm -rf "$chroot_dir"
  debootstrap --variant=minbase bookworm "$chroot_dir" http://deb.debian.org/debian >/dev/null
fi
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
mount --bind /proc "$chroot_dir/proc"
trap 'umount "$chroot_dir/proc" 2>/dev/null || true' EXIT
cp "$deb" "$chroot_dir/tmp/gridwatch.deb"

say "installing $(basename "$deb") with apt"
in_chroot 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/gridwatch.deb >/dev/null'
in_chroot 'id gridwatch'
[ "$(in_chroot 'stat -c %U:%G:%a /var/lib/gridwatch')" = gridwatch:gridwatch:750 ]
[ "$(in_chroot 'stat -c %U:%G:%a /etc/gridwatch/config.toml')" = root:gridwatch:640 ]
in_chroot 'test -L /etc/systemd/system/multi-user.target.wants/gridwatch.service'
say "gridwatch check as the service user"
in_chroot 'su -s /bin/sh gridwatch -c "cd /var/lib/gridwatch && GRIDWATCH_MODEL_DIR=/usr/share/gridwatch/models gridwatch models fetch yolox_nano && gridwatch check --config /etc/gridwatch/config.toml"'

say "purging"
in_chroot 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq gridwatch >/dev/null 2>&1'
in_chroot '! test -e /var/lib/gridwatch && ! test -e /etc/gridwatch && ! test -e /usr/bin/gridwatch'
say "passed: installed, ran as gridwatch, purged"
