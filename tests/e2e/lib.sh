# Shared helpers for the end-to-end suites (source after tests/lib/common.sh).
# VIRSH, LIBVIRT_WAIT, wait_libvirt, guest_xml, disk_xml: shared with the aavm VM suites.
# shellcheck source=tests/lib/guest.sh
. "$ROOT/tests/lib/guest.sh"
BIN_DIR=${VAH_BIN_DIR:-$ROOT/target/release}
STARTED_DAEMONS=()
# The daemons start from here, not from systemd (LimitCORE=infinity there): raise the core-size
# limit libvirt >= 10 hands on to QEMU (why, and when root cannot: tests/run.sh).
ulimit -c unlimited 2>/dev/null || true

# Start virtlogd and libvirtd unless they already run; remember what we started. Every suite
# calls it, so that none depends on a daemon that an earlier suite left running.
start_daemons() {
  mkdir -p /run/libvirt /var/log/libvirt/qemu
  if ! pgrep -x virtlogd >/dev/null; then virtlogd -d && STARTED_DAEMONS+=(virtlogd); fi
  if ! pgrep -x libvirtd >/dev/null; then libvirtd -d && STARTED_DAEMONS+=(libvirtd); fi
  wait_libvirt
}

# Stop the daemons this shell started, and wait until they are gone (a next start must not
# meet the old daemon's pidfile).
stop_daemons() {
  local d
  for d in "${STARTED_DAEMONS[@]}"; do
    pkill -x "$d" || true
    wait_for 120 "$d to exit" bash -c "! pgrep -x $d"
  done
  STARTED_DAEMONS=()
}

# Restart libvirtd (SIGTERM, wait until it has exited, then start) while guests run.
restart_libvirtd() {
  local pid; pid=$(pgrep -x libvirtd)
  if [ -n "$pid" ]; then
    kill "$pid"
    wait_for 120 "libvirtd (pid $pid) to exit" bash -c "! kill -0 $pid" || return 1
  fi
  libvirtd -d
  wait_libvirt
}

# reload_hooks: make libvirtd see a changed /etc/libvirt/hooks. libvirt scans the hooks when
# the daemon starts (and on SIGHUP, but nothing shows when that rescan is done): restart it.
reload_hooks() { restart_libvirtd; }

# remove_guest NAME: destroy and undefine, ignoring errors.
remove_guest() {
  $VIRSH destroy "$1" >/dev/null 2>&1 || true
  $VIRSH undefine --nvram "$1" >/dev/null 2>&1 || $VIRSH undefine "$1" >/dev/null 2>&1 || true
}

# remove_test_guests: every guest a suite defines is named vah-*; remove what a failed or
# killed run left behind (before the suites, and after them).
remove_test_guests() {
  local g
  for g in $($VIRSH list --all --name 2>/dev/null | grep '^vah-'); do
    echo "  (removing leftover test guest $g)"
    remove_guest "$g"
  done
}

# Back up the host's own qemu hook entries so a suite can install ours, and restore them.
HOOK_BACKUP=""
backup_host_hook() {
  HOOK_BACKUP=$(mktemp -d)
  [ -e /etc/libvirt/hooks/qemu ] || [ -L /etc/libvirt/hooks/qemu ] && cp -a /etc/libvirt/hooks/qemu "$HOOK_BACKUP/" || true
  [ -d /etc/libvirt/hooks/qemu.d ] && cp -a /etc/libvirt/hooks/qemu.d "$HOOK_BACKUP/" || true
}
restore_host_hook() {
  [ -n "$HOOK_BACKUP" ] || return 0
  rm -rf /etc/libvirt/hooks/qemu /etc/libvirt/hooks/qemu.d
  [ -e "$HOOK_BACKUP/qemu" ] || [ -L "$HOOK_BACKUP/qemu" ] && cp -a "$HOOK_BACKUP/qemu" /etc/libvirt/hooks/ || true
  [ -d "$HOOK_BACKUP/qemu.d" ] && cp -a "$HOOK_BACKUP/qemu.d" /etc/libvirt/hooks/ || true
  rm -rf "$HOOK_BACKUP"; HOOK_BACKUP=""
}

# Install the product for real (binaries, hook symlink, template, config) and make libvirt see
# the hook. Uses install/install.sh (builds the .deb from target/release, apt installs it).
install_product() {
  backup_host_hook
  rm -f /etc/libvirt/hooks/qemu
  "$ROOT/install/install.sh" --no-build >/tmp/vah-e2e-install.log 2>&1 || { cat /tmp/vah-e2e-install.log; return 1; }
  reload_hooks
}

uninstall_product() {
  # --purge: the host as before (configuration, log and /var/lib/virt-aa-hook too).
  "$ROOT/install/install.sh" --uninstall --purge >/tmp/vah-e2e-uninstall.log 2>&1 || cat /tmp/vah-e2e-uninstall.log
  restore_host_hook
  pgrep -x libvirtd >/dev/null && reload_hooks
  return 0
}

LOG=/var/log/libvirt/virt-aa-hook.log
# log_since MARK: log lines written after `MARK=$(log_mark)`.
log_mark() { [ -f "$LOG" ] && wc -l <"$LOG" || echo 0; }
log_since() { [ -f "$LOG" ] && tail -n +"$(($1 + 1))" "$LOG" || true; }
