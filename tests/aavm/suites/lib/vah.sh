# Helpers for the virt-aa-hook suites that run INSIDE an aavm VM (tests/aavm/suites/NN-*.sh).
# Source after tests/lib/common.sh, with cwd = the repo. Everything written here lands in the
# VM's RAM overlay and is thrown away at power-off.
# VIRSH, wait_libvirt, guest_xml, disk_xml: shared with the end-to-end suites.
# shellcheck source=tests/lib/guest.sh
. tests/lib/guest.sh
VAH_LOG=/var/log/libvirt/virt-aa-hook.log
PROFILES=/sys/kernel/security/apparmor/profiles

# The VM boots over the host's live root: whatever the host's own tests left in /etc/libvirt,
# /etc/apparmor.d/libvirt or /var/lib/virt-aa-hook at that moment is visible. Start clean.
vah_clean_state() {
  # Directories that the host's own tests create and delete while this VM runs are replaced by
  # fresh ones in the overlay: writing into a directory that vanished from the (cached, 9p) lower
  # layer fails with ENOENT at copy-up. The same for our installed files: install.sh writes new
  # copies into the overlay.
  local d
  # The product installed on the host (the README's install command, run first) is installed in
  # the VM too: purge it through dpkg, so that dpkg's state matches the files (deleting its
  # conffiles behind dpkg's back makes the next `dpkg -i` of that version leave them missing)
  # and its diversion of libvirt's helper is undone.
  if dpkg-query -W -f '${Status}' virt-aa-hook 2>/dev/null | grep -q ' installed$'; then
    DEBIAN_FRONTEND=noninteractive dpkg --purge virt-aa-hook >/tmp/vah-purge.log 2>&1 ||
      { echo "  (dpkg --purge virt-aa-hook of the host's install failed:)"; sed 's/^/    /' /tmp/vah-purge.log; }
  fi
  mkdir -p /tmp/vah-templates && cp -a /etc/apparmor.d/libvirt/TEMPLATE.* /tmp/vah-templates/ 2>/dev/null
  for d in /etc/apparmor.d/libvirt /etc/apparmor.d/local/libvirt /etc/libvirt/hooks \
    /var/lib/virt-aa-hook /etc/libvirt/qemu /var/log/libvirt; do
    rm -rf "$d"; mkdir -p "$d"
  done
  # /srv: a fresh tmpfs, not rm -rf: the host's /srv can hold whole roots with their /proc and
  # /sys mounted (the clean-root run's chroot), and deleting those over 9p took > 15 minutes.
  mount -t tmpfs -o mode=755 vah-srv /srv
  mkdir -p /var/log/libvirt/qemu
  cp -a /tmp/vah-templates/. /etc/apparmor.d/libvirt/
  rm -f /usr/lib/libvirt/virt-aa-hook /usr/lib/libvirt/virt-aa-hook-libvirt \
    /usr/lib/libvirt/virt-aa-hook.qemu-system-* /usr/sbin/virt-aa-hook \
    /etc/libvirt/virt-aa-hook.conf /etc/libvirt/virt-aa-hook.template \
    /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook /etc/apparmor.d/abstractions/virt-aa-hook-qemu \
    /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook-libvirt /etc/apparmor.d/abstractions/virt-aa-hook-parser \
    /etc/logrotate.d/virt-aa-hook /etc/apparmor.d/local/usr.lib.libvirt.virt-aa-hook \
    /etc/apparmor.d/local/usr.lib.libvirt.virt-aa-hook-libvirt
  # Without auditd, AppArmor's audit records reach dmesg through printk_ratelimit (10 per 5 s):
  # switch the limit off so that no DENIED line a check looks for is dropped.
  sysctl -qw kernel.printk_ratelimit=0 2>/dev/null || echo 0 >/proc/sys/kernel/printk_ratelimit
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
}

# vah_install [INSTALL-ARGS...]: install the Debian package that tests/aavm/suite.sh built on the
# host from target/release (the VM has no network: its dependencies are already in the root), with
# install.sh's further arguments (e.g. --no-helper-mode).
vah_install() {
  local deb
  deb=$(ls target/debian/aavm/virt-aa-hook_*.deb 2>/dev/null | head -n1)
  if [ -z "$deb" ]; then
    echo "target/debian/aavm/virt-aa-hook_*.deb missing: run 'cargo deb --no-build -o target/debian/aavm/' on the host" >&2
    return 1
  fi
  install/install.sh --deb "$deb" "$@" >/tmp/vah-install.log 2>&1 || { sed 's/^/    install: /' /tmp/vah-install.log; return 1; }
}

# vah_install_or_stop [INSTALL-ARGS...]: vah_install, with an ok line; a suite cannot go on
# without the package.
vah_install_or_stop() {
  if vah_install "$@"; then ok "install the package (install.sh --deb)"; else fail "install the package (install.sh --deb)"; finish; exit 1; fi
}

# vah_reload PROFILE...: apparmor_parser -r /etc/apparmor.d/PROFILE, an ok or FAIL line each.
vah_reload() {
  local p out
  for p in "$@"; do
    if out=$(apparmor_parser -r "/etc/apparmor.d/$p" 2>&1); then ok "apparmor_parser -r $p"; else fail "apparmor_parser -r $p: $out"; fi
  done
}

# vah_libvirtd DRIVER: qemu.conf for this VM (security_driver DRIVER, no virtlogd, and the lines
# in $VAH_QEMU_CONF), then libvirtd -d and wait until it answers. Load the AppArmor profiles
# BEFORE calling this.
vah_libvirtd() {
  cat >/etc/libvirt/qemu.conf <<CONF
security_driver = "$1"
stdio_handler = "file"
${VAH_QEMU_CONF:-}
CONF
  mkdir -p /run/libvirt /var/lib/libvirt/images
  /usr/sbin/libvirtd -d || return 1
  wait_libvirt 300
}

# vah_start GUEST...: virsh start each, an ok line with the seconds it took or a FAIL line.
vah_start() {
  local g t0 out
  for g in "$@"; do
    t0=$SECONDS
    if out=$($VIRSH start "$g" 2>&1); then ok "virsh start $g ($((SECONDS - t0)) s)"; else fail "virsh start $g: $out"; fi
  done
}

# denials [PROFILE]: the apparmor="DENIED" lines of dmesg, optionally only PROFILE's.
denials() {
  if [ $# -gt 0 ]; then dmesg | grep 'apparmor="DENIED"' | grep -F "profile=\"$1\""
  else dmesg | grep 'apparmor="DENIED"'; fi
}

# own_denials: the apparmor="DENIED" lines of our own profiles: the hook's (virt-aa-hook), the
# admin binary's (virt-aa-hook-libvirt), their children (//parser, //logs) and libvirt's helper
# profile, which runs the diverted helper in helper mode (issue 21: no Ux child any more).
own_denials() {
  dmesg | grep 'apparmor="DENIED"' |
    grep -E 'profile="(virt-aa-hook(-libvirt)?(//[a-z]+)?|virt-aa-helper)"'
}
# expect_no_own_denials: ok when our profiles denied nothing during the suite.
expect_no_own_denials() {
  local bad
  bad=$(own_denials)
  if [ -z "$bad" ]; then ok "0 apparmor=\"DENIED\" lines of our own profiles (virt-aa-hook[-libvirt][//child], virt-aa-helper)"
  else fail "$(wc -l <<<"$bad") apparmor=\"DENIED\" lines of our own profiles:"; sort -u <<<"$bad" | head -40 | sed 's/^/    /'; fi
}

# loaded_mode PROFILE: enforce / complain / nothing (not loaded).
loaded_mode() { sed -n "s/^$1 (\(.*\))\$/\1/p" "$PROFILES"; }

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (expected '$2', got '$3')"; fi; }

# qmp_open GUEST NODE PATH: ask the running QEMU to open PATH read-only (QMP blockdev-add);
# prints QEMU's answer. Make PATH readable by the QEMU user first, so that only AppArmor decides.
qmp_open() {
  $VIRSH qemu-monitor-command "$1" "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"file\",\"node-name\":\"$2\",\"filename\":\"$3\",\"read-only\":true}}" 2>&1
}
