# Shared helpers for the end-to-end suites (source after tests/lib/common.sh).
VIRSH="virsh -c qemu:///system"
BIN_DIR=${VAH_BIN_DIR:-$ROOT/target/release}
STARTED_DAEMONS=()
# The daemons start from here, not from systemd (LimitCORE=infinity there): raise the core-size
# limit libvirt >= 10 hands on to QEMU (why, and when root cannot: tests/run.sh).
ulimit -c unlimited 2>/dev/null || true

# Start virtlogd and libvirtd unless they already run; remember what we started.
start_daemons() {
  mkdir -p /run/libvirt /var/log/libvirt/qemu
  if ! pgrep -x virtlogd >/dev/null; then virtlogd -d && STARTED_DAEMONS+=(virtlogd); fi
  if ! pgrep -x libvirtd >/dev/null; then libvirtd -d && STARTED_DAEMONS+=(libvirtd); fi
  wait_libvirt 30
}

stop_daemons() {
  local d
  for d in "${STARTED_DAEMONS[@]}"; do pkill -x "$d" || true; done
  STARTED_DAEMONS=()
}

# wait_libvirt SECONDS: until the daemon answers.
wait_libvirt() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    $VIRSH version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "libvirtd did not answer within $1 s" >&2
  return 1
}

# Restart libvirtd (SIGTERM, then start) while guests run.
restart_libvirtd() {
  local pid; pid=$(pgrep -x libvirtd)
  [ -n "$pid" ] && kill "$pid"
  for _ in $(seq 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.1; done
  libvirtd -d
  wait_libvirt 30
}

# A minimal TCG guest: NAME UUID DISK-XML [EXTRA-DEVICES-XML]
guest_xml() {
  cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <uuid>$2</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <emulator>${EMULATOR:-/usr/bin/qemu-system-x86_64}</emulator>
    $3
    ${4:-}

    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# remove_guest NAME: destroy and undefine, ignoring errors.
remove_guest() {
  $VIRSH destroy "$1" >/dev/null 2>&1 || true
  $VIRSH undefine --nvram "$1" >/dev/null 2>&1 || $VIRSH undefine "$1" >/dev/null 2>&1 || true
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
  # libvirt scans hooks at start and on SIGHUP
  pkill -HUP -x libvirtd || true
  sleep 1
  wait_libvirt 30
}

uninstall_product() {
  # --purge: the host as before (configuration, log and /var/lib/virt-aa-hook too).
  "$ROOT/install/install.sh" --uninstall --purge >/tmp/vah-e2e-uninstall.log 2>&1 || cat /tmp/vah-e2e-uninstall.log
  restore_host_hook
  pkill -HUP -x libvirtd || true
  sleep 1
}

LOG=/var/log/libvirt/virt-aa-hook.log
# log_since MARK: log lines written after `MARK=$(log_mark)`.
log_mark() { [ -f "$LOG" ] && wc -l <"$LOG" || echo 0; }
log_since() { [ -f "$LOG" ] && tail -n +"$(($1 + 1))" "$LOG" || true; }
