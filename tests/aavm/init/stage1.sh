#!/bin/busybox sh
# aavm stage 1: load the 9p/overlay modules, assemble the guest root, switch_root into it.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "aavm stage 1 failed: $*"; poweroff -f; }
# --verbose boots without "quiet": then log progress with the guest uptime.
V=; grep -qw quiet /proc/cmdline || V=1
t() { [ -z "$V" ] || { read -r up _ </proc/uptime; echo "aavm: [$up] $*"; }; }
t "stage 1"

# Modules in dependency order (written by the host when it built this initramfs).
while read -r m; do insmod "/lib/modules/$m.ko" || fail "insmod $m"; done </lib/modules/order
t "modules loaded"

# Host / (or the --root) read-only over 9p, a tmpfs upper layer, the overlay of both as the new root.
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$o,ro,cache=loose" hostroot /lower || fail "mount host root (9p)"
mount -t tmpfs -o mode=755 rw /rw && mkdir /rw/upper /rw/work || fail "tmpfs /rw"
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work,index=off,xino=off,redirect_dir=off,metacopy=off \
  overlay /newroot || fail "overlay"

# A fresh /run (the host's holds a live libvirtd's sockets), the per-run share, the user's share.
mount -t tmpfs -o mode=755,nosuid,nodev run /newroot/run || fail "tmpfs /run"
mkdir -p /newroot/run/aavm/share
mount -t 9p -o "$o" aavmrun /newroot/run/aavm/share || fail "mount run share (9p)"
. /newroot/run/aavm/share/stage.conf || fail "no stage.conf"
if [ -n "$AAVM_RO_SHARE" ]; then
  mkdir -p "/newroot$AAVM_RO_SHARE" && mount -t 9p -o "$o,ro" aavmro "/newroot$AAVM_RO_SHARE" || fail "mount $AAVM_RO_SHARE"
fi
if [ -n "$AAVM_SHARE" ]; then
  mkdir -p "/newroot$AAVM_SHARE" && mount -t 9p -o "$o" aavmshare "/newroot$AAVM_SHARE" || fail "mount $AAVM_SHARE"
fi

cp /bin/busybox /stage2 /wrapper /newroot/run/aavm/ || fail "copy stage 2"
t "root assembled"
for d in dev proc sys; do mount --move "/$d" "/newroot/$d" || fail "move /$d"; done
# switch_root, not chroot: AppArmor matches paths relative to the namespace root.
exec switch_root /newroot /run/aavm/stage2
fail "switch_root"
