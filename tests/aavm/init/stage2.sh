#!/run/aavm/busybox sh
# aavm stage 2: finish the system setup, run the script with its output on ttyS1, power off.
bb=/run/aavm/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. /run/aavm/share/stage.conf
V=; $bb grep -qw quiet /proc/cmdline || V=1
t() { [ -z "$V" ] || { read -r up _ </proc/uptime; echo "aavm: [$up] $*" >/dev/console; }; }
t "stage 2"
$bb mount -t securityfs securityfs /sys/kernel/security
$bb mkdir -p /dev/pts /dev/shm /dev/mqueue
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
$bb mount -t mqueue mqueue /dev/mqueue
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup
$bb mkdir -p /run/lock && $bb chmod 1777 /run/lock
$bb hostname "$AAVM_HOSTNAME"
printf '127.0.1.1\t%s\n' "$AAVM_HOSTNAME" >>/etc/hosts
$bb ip link set lo up
if [ -n "$AAVM_NET_IP" ]; then
  $bb ip addr add "$AAVM_NET_IP" dev eth0 && $bb ip link set eth0 up || echo "aavm: cannot configure eth0" >/dev/console
fi
# Raw mode: the output stays 8-bit clean (no \n -> \r\n).
$bb stty -F /dev/ttyS1 raw -echo
t "running the script"
# busybox timeout execs the command in its own pid, so a kill shows up here as 137.
$bb timeout -s KILL "$AAVM_TIMEOUT" $bb env -i /run/aavm/wrapper </dev/null >/dev/ttyS1 2>&1
echo $? >/run/aavm/share/rc
t "script done"
# stty sets the mode with TCSADRAIN: returns once all output has left the UART.
$bb stty -F /dev/ttyS1 raw
$bb sync
$bb poweroff -f
