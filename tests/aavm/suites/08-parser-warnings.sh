#!/usr/bin/env bash
# Suite 08, run INSIDE an aavm VM as `08-parser-warnings.sh REPO`: this distribution's
# apparmor_parser (3.0 on Debian 12, 4.1 on Debian 13, 5.0 on unstable) compiles our own profile
# and every profile generated from the corpus (tests/corpus/*.xml, both modes' rendering) with
# `--warn=all` and says nothing about them: no warning of ours (abi, deprecated syntax, unknown
# rule). Warnings the parser gives about the distribution's own files (abstractions, tunables) are
# printed as notes, not counted: we cannot change those files.
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

vah_clean_state
echo "  --   $(apparmor_parser --version | head -n1)"
vah_install_or_stop

W=/tmp/vah-warn; mkdir -p $W
# compile FILE: apparmor_parser -Q -K --warn=all; prints its messages (empty = clean).
compile() { apparmor_parser -Q -K --warn=all "$1" 2>&1; }
# ours FILE < LINES: the messages about OUR text: not those located in the distribution's
# abstractions/tunables/abi, and not "downgrading extended network unix socket rule" when FILE
# itself has no unix rule (then the downgraded rules are abstractions/base's: its abi line is newer
# than the distribution's pinned feature set, e.g. AppArmor 4.1 + Debian 13's pin).
ours() {
  local drop=(-e "/etc/apparmor\.d/(abstractions|tunables|abi)/" -e '^[[:space:]]*$')
  grep -qE '^[[:space:]]*(audit |deny )?unix' "$1" || drop+=(-e 'downgrading extended network unix socket rule')
  # "<kind> rules not enforced" names no file: the kernel lacks that mediation (Debian 12's 6.1 has
  # no dbus mediation) and the rules are the distribution's (abstractions/libvirt-qemu includes
  # dbus abstractions). Ours only when FILE itself has a rule of that kind.
  local k
  for k in dbus signal ptrace mount umount remount pivot_root unix network io_uring userns mqueue; do
    grep -qE "^[[:space:]]*(audit |deny )?$k([[:space:],]|\$)" "$1" || drop+=(-e "$k rules not enforced")
  done
  grep -v -E "${drop[@]}" || true
}

judge() {   # judge DESCRIPTION FILE
  local out mine
  out=$(compile "$2"); local rc=$?
  mine=$(ours "$2" <<<"$out")
  if [ $rc -ne 0 ]; then fail "$1: apparmor_parser exit status $rc:"; echo "$out" | sed 's/^/    /'; return; fi
  if [ -n "$mine" ]; then fail "$1: warnings:"; echo "$mine" | sed 's/^/    /'; return; fi
  ok "$1 compiles, no warning of ours"
  [ -z "$out" ] || { echo "  --   distro notes for $1:"; sort -u <<<"$out" | sed 's/^/       /'; }
}

judge "our profile usr.lib.libvirt.virt-aa-hook" /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook
judge "our profile usr.lib.libvirt.virt-aa-hook-libvirt" /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook-libvirt
# The template as shipped, rendered with no rules at all.
n=0 bad=0
for xml in tests/corpus/*.xml; do
  name=$(basename "$xml" .xml)
  for mode in libvirt standalone; do
    f=$W/$name.$mode
    if ! virt-aa-hook generate --profile --no-probe --mode $mode "$xml" >$f 2>$f.err; then
      fail "generate --profile --mode $mode $name: $(cat $f.err)"; continue
    fi
    # libvirt's .files include is "if exists": nothing to provide.
    out=$(compile $f); rc=$?
    mine=$(ours $f <<<"$out")
    n=$((n + 1))
    if [ $rc -ne 0 ] || [ -n "$mine" ]; then
      bad=$((bad + 1)); fail "$name ($mode): rc=$rc, warnings of ours:"; echo "$mine" | sort -u | head -n 5 | sed 's/^/    /'
    fi
    [ -z "$out" ] || echo "$out" >>$W/notes
  done
done
[ $bad -eq 0 ] && ok "all $n corpus profiles compile with --warn=all, no warning of ours"
if [ -s $W/notes ]; then echo "  --   distro notes (corpus):"; sort -u $W/notes | head -n 10 | sed 's/^/       /'; fi
finish ""
