# Two libvirt "hosts" on this machine for the migration suite (source after tests/lib/common.sh).
#
# Each host is a network namespace (a veth pair joins the two on a private /24) plus its own
# mount and UTS namespace: a private /run (tmpfs), and its own /etc/libvirt, /var/lib/libvirt,
# /var/log/libvirt and /var/cache/libvirt bind-mounted from a per-host directory, so it runs its
# own virtlogd + libvirtd (TCP on its address, no auth) and never sees the host's libvirt. The
# product is unpacked from its Debian package into the host's prefix ($TH_DIR/<host>/root, the
# hook's `root`), and /etc/libvirt/hooks/qemu runs the packaged binary through a wrapper that
# records everything it prints on stdout (libvirt reads a migrate hook's stdout as XML).
# Nothing of the machine's own libvirt is touched; th_down (run from a trap) ends every process
# in the hosts' namespaces (found by namespace, so only ours), then removes the namespaces.
#
# Use: th_init; th_host_up a 10.213.77.1; th_host_up b 10.213.77.2; th_link;
#      on a CMD...; vsh a list; th_down

TH_DIR=""
TH_NET=10.213.77
declare -A TH_HOLDER TH_IP TH_NS

# th_init: the work directory (world-readable: QEMU runs as libvirt-qemu) and the package.
th_init() {
  TH_DIR=$(mktemp -d /tmp/vah-migrate.XXXXXX); export TH_DIR   # (read by checks in bash -c)
  chmod 755 "$TH_DIR"
  mkdir -p "$TH_DIR/shared"
  chmod 777 "$TH_DIR/shared"
  TH_DEB=${VAH_DEB:-}
  if [ -z "$TH_DEB" ]; then
    TH_DEB=$(cd "$ROOT" && cargo deb --no-build --fast --locked 2>/dev/null | tail -n1)
  fi
  [ -f "$TH_DEB" ] || { echo "no package (cargo deb --no-build failed; build target/release first)" >&2; return 1; }
}

# on HOST CMD...: run a command inside that host's namespaces.
# -r -w: entering a mount namespace resets root and cwd to that namespace's root; in a chroot (the
# clean roots of tests/lib/cleanroot.sh) that is the outer machine's, whose libvirtd then ran
# with the outer /etc/libvirt ("Unable to initialize network sockets" in a clean Debian 13
# root). The holder's own root keeps the command in ours.
on() {
  local h=$1; shift
  nsenter -t "${TH_HOLDER[$h]}" -m -u -n -r -w -- "$@"
}

# vsh HOST ARGS...: virsh against that host's libvirtd.
vsh() {
  local h=$1; shift
  on "$h" virsh -q -c qemu:///system "$@"
}

# th_host_up NAME IP: directories, configuration, namespaces, product, daemons.
th_host_up() {
  local h=$1 ip=$2 d=$TH_DIR/$1 n
  n=$(printf '%s' "$h" | od -An -tx1 | tr -d ' \n' | cut -c1-2)
  TH_IP[$h]=$ip
  TH_NS[$h]=vahm-$h-$$
  mkdir -p "$d"/{etc-libvirt/hooks,var-lib-libvirt/images,var-log-libvirt/qemu,var-cache-libvirt,root}
  # The product as the package ships it, below this host's prefix.
  dpkg-deb -x "$TH_DEB" "$d/root"
  mkdir -p "$d/root/var/log/libvirt" "$d/root/var/lib/virt-aa-hook" "$d/root/etc/apparmor.d/libvirt"
  { cat "$d/root/etc/libvirt/virt-aa-hook.conf"; echo "root = \"$d/root\""; } >"$d/etc-libvirt/virt-aa-hook.conf"
  cat >"$d/etc-libvirt/hooks/qemu" <<EOF
#!/bin/bash
# The packaged hook; what it prints on stdout is passed on to libvirt and kept for the test.
# Run as "qemu" (argv[0] picks the hook role, as through the package's symlink).
(exec -a "\$0" "$d/root/usr/lib/libvirt/virt-aa-hook" "\$@") | tee -a "$d/hook-stdout"
exit \${PIPESTATUS[0]}
EOF
  chmod 755 "$d/etc-libvirt/hooks/qemu"
  : >"$d/hook-stdout"
  cat >"$d/etc-libvirt/libvirtd.conf" <<EOF
listen_tls = 0
listen_tcp = 1
listen_addr = "$ip"
auth_tcp = "none"
host_uuid = "00000000-0000-4000-8000-0000000000$n"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  # No cgroups for guests: both hosts share the machine's cgroup tree, and the same guest name
  # on both during a migration would be the same cgroup. Shared storage is a local directory:
  # libvirt must not remember owners in xattrs both hosts would count.
  cat >"$d/etc-libvirt/qemu.conf" <<EOF
cgroup_controllers = [ ]
remember_owner = 0
migration_address = "$ip"
migration_host = "$ip"
EOF
  : >"$d/etc-libvirt/virtlogd.conf"
  ip netns add "${TH_NS[$h]}"
  ip -n "${TH_NS[$h]}" link set lo up
  cat >"$d/holder.sh" <<EOF
set -e
hostname vahm-$h
mount -t tmpfs -o mode=755 vahm-run /run
mkdir -p /run/libvirt /run/lock
mount --bind "$d/etc-libvirt" /etc/libvirt
mount --bind "$d/var-lib-libvirt" /var/lib/libvirt
mount --bind "$d/var-log-libvirt" /var/log/libvirt
mount --bind "$d/var-cache-libvirt" /var/cache/libvirt
touch "$d/ready"
exec sleep infinity
EOF
  ip netns exec "${TH_NS[$h]}" unshare -m -u --propagation private bash "$d/holder.sh" </dev/null >"$d/holder.log" 2>&1 &
  TH_HOLDER[$h]=$!
  wait_for 60 "host $h's namespaces" test -e "$d/ready" || { echo "host $h: namespaces not ready: $(cat "$d/holder.log")" >&2; return 1; }
}

# th_link: the veth pair between the two hosts' network namespaces.
th_link() {
  local a=$1 b=$2 va=vahm$$a vb=vahm$$b
  ip link add "$va" type veth peer name "$vb"
  ip link set "$va" netns "${TH_NS[$a]}"
  ip link set "$vb" netns "${TH_NS[$b]}"
  ip -n "${TH_NS[$a]}" addr add "${TH_IP[$a]}/24" dev "$va"
  ip -n "${TH_NS[$b]}" addr add "${TH_IP[$b]}/24" dev "$vb"
  ip -n "${TH_NS[$a]}" link set "$va" up
  ip -n "${TH_NS[$b]}" link set "$vb" up
}

# th_daemons_up HOST: virtlogd and libvirtd (listening on TCP) in the host's namespaces.
th_daemons_up() {
  local h=$1
  on "$h" virtlogd -d || return 1
  on "$h" libvirtd -d --listen || return 1
  wait_for "$LIBVIRT_WAIT" "host $h's libvirtd to answer" vsh "$h" version
}

# Processes in a host's mount namespace: exactly the ones this suite started there.
th_pids() {
  local h=$1 ns p
  [ -n "${TH_HOLDER[$h]:-}" ] || return 0
  ns=$(readlink "/proc/${TH_HOLDER[$h]}/ns/mnt" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
}

# th_only_holder HOST: no process but the holder left in the host's namespaces.
th_only_holder() { [ -z "$(th_pids "$1" | grep -vx "${TH_HOLDER[$1]}")" ]; }

# th_down: guests destroyed, daemons and holders ended, namespaces and work directory removed.
th_down() {
  local h p dom
  for h in "${!TH_HOLDER[@]}"; do
    if kill -0 "${TH_HOLDER[$h]}" 2>/dev/null; then
      for dom in $(vsh "$h" list --name 2>/dev/null); do vsh "$h" destroy "$dom" >/dev/null 2>&1; done
      for p in $(th_pids "$h"); do [ "$p" != "${TH_HOLDER[$h]}" ] && kill "$p" 2>/dev/null; done
      wait_for 30 "host $h's processes to exit" th_only_holder "$h"
      for p in $(th_pids "$h"); do [ "$p" != "${TH_HOLDER[$h]}" ] && kill -9 "$p" 2>/dev/null; done
      kill "${TH_HOLDER[$h]}" 2>/dev/null
    fi
    ip netns del "${TH_NS[$h]}" 2>/dev/null
  done
  wait 2>/dev/null
  TH_HOLDER=()
  [ -n "$TH_DIR" ] && [ -z "${VAH_KEEP:-}" ] && rm -rf "$TH_DIR"
  return 0
}
