#!/usr/bin/env bash
# Build and install virt-aa-hook (or remove it again). Run as root from a checkout:
#
#     install/install.sh                 build (cargo build --release --locked) and install
#     install/install.sh --no-build      install the existing target/release binaries
#     install/install.sh --dry-run       print what would be done, change nothing
#     install/install.sh --uninstall     remove what an earlier run installed
#     DESTDIR=/tmp/pkg install/install.sh --no-build   stage into a directory (packagers)
#
# What goes where (the installed layout):
#   $PREFIX/lib/libvirt/virt-aa-hook            the hook / wrapper / admin binary (0755)
#   $PREFIX/lib/libvirt/virt-aa-hook-libvirt    its libvirt-linked half (0755)
#   $PREFIX/lib/libvirt/virt-aa-hook.qemu-system-<arch>
#                                               emulator wrappers: HARD links to virt-aa-hook
#                                               (AppArmor attaches by the exec'd path; a symlink
#                                               would resolve to the hook's own profile)
#   $PREFIX/sbin/virt-aa-hook                   symlink to the binary (the admin command)
#   /etc/libvirt/hooks/qemu                     symlink to the binary, or, when the admin already
#     or /etc/libvirt/hooks/qemu.d/50-virt-aa-hook  has a qemu hook, this symlink instead
#   /etc/libvirt/virt-aa-hook.template          profile template (from hooks/template.qemu)
#   /etc/libvirt/virt-aa-hook.conf              commented default config
#   /etc/apparmor.d/local/libvirt/README        how to add per-guest rules
#   /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook  the binary's own AppArmor profile
#   /etc/apparmor.d/abstractions/libvirt-qemu   a minimal one, only if the distro has none
#   /etc/logrotate.d/virt-aa-hook               log rotation
#   /var/lib/virt-aa-hook/install-manifest      what this script wrote (path + sha256)
#   /usr/lib/libvirt/virt-aa-helper             helper mode (default where libvirt ships it):
#                                               symlink to the binary; libvirt's own helper is
#                                               moved aside by `dpkg-divert --rename` to
#                                               virt-aa-helper.distrib and restored on uninstall
#
# The symlinks matter: libvirtd's AppArmor profile confines plain files in hooks/ (and denies them
# apparmor_parser), but lets an exec of /usr/lib/libvirt/* leave its confinement; the rule is
# checked against the symlink's target.
#
# Files in /etc are configuration: one the admin edited since we installed it is never
# overwritten; the new version is put beside it (.new in /etc/libvirt, .dpkg-dist in
# /etc/apparmor.d and /etc/logrotate.d, whose loaders skip that suffix but not ".new").
# Re-running is safe: unchanged files are left as they are, and a run that changes nothing says
# "nothing to do: already installed".
set -Eeuo pipefail
shopt -s nullglob

PROG=install.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

usage() {
  cat <<'EOF'
Usage: install/install.sh [--prefix DIR] [--no-build] [--dry-run] [--uninstall]

  --prefix DIR   install the binaries under DIR/lib/libvirt and DIR/sbin (default /usr; libvirtd's
                 AppArmor profile only lets hooks in /usr/lib/libvirt/ out of its confinement)
  --no-build     do not run cargo; use the binaries already in target/release
  --dry-run      print each action that would be taken, change nothing
  --uninstall    remove what an earlier install wrote (files edited since are kept)
  --no-helper-mode  keep libvirt's own virt-aa-helper (and undo helper mode if it was installed);
                 default: helper mode wherever /usr/lib/libvirt/virt-aa-helper exists
  -h, --help     this text

Environment:
  DESTDIR=DIR    install everything below DIR (for packaging): no apt-get, no profile load,
                 no daemon signal, no doctor
EOF
}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/usr
DRY=0
UNINSTALL=0
BUILD=1
HELPER_MODE=1
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    --dry-run) DRY=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --no-build) BUILD=0 ;;
    --no-helper-mode) HELPER_MODE=0 ;;
    --helper-mode) HELPER_MODE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
case $PREFIX in /*) ;; *) die "--prefix must be an absolute path, not '$PREFIX'" ;; esac
PREFIX=${PREFIX%/}
D=${DESTDIR:-}
D=${D%/}
case $D in ''|/*) ;; *) die "DESTDIR must be an absolute path, not '$D'" ;; esac

# Installed paths (without DESTDIR).
LIBDIR=$PREFIX/lib/libvirt
BIN=$LIBDIR/virt-aa-hook
ADMIN=$LIBDIR/virt-aa-hook-libvirt
SBIN_LINK=$PREFIX/sbin/virt-aa-hook
HOOKS=/etc/libvirt/hooks
HOOK_MAIN=$HOOKS/qemu
HOOK_D=$HOOKS/qemu.d/50-virt-aa-hook
TEMPLATE=/etc/libvirt/virt-aa-hook.template
CONF=/etc/libvirt/virt-aa-hook.conf
LOCALDIR=/etc/apparmor.d/local/libvirt
AAPROFILE=/etc/apparmor.d/usr.lib.libvirt.virt-aa-hook
ABSTRACTION=/etc/apparmor.d/abstractions/libvirt-qemu
LOGROTATE=/etc/logrotate.d/virt-aa-hook
STATE=/var/lib/virt-aa-hook
MANIFEST=$STATE/install-manifest
EMULATOR_DIR=/usr/bin           # the config's emulator_dir default: one wrapper per emulator here
PROFILE_NAME=virt-aa-hook       # the name inside install/apparmor/usr.lib.libvirt.virt-aa-hook
# libvirt's fixed helper path (LIBEXECDIR "/virt-aa-helper" in security_apparmor.c; not --prefix).
VAH_HELPER=/usr/lib/libvirt/virt-aa-helper
VAH_DISTRIB=$VAH_HELPER.distrib

BUILT=${CARGO_TARGET_DIR:-$SRC/target}/release

if [ "$DRY" -eq 0 ] && [ -z "$D" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (or use --dry-run, or DESTDIR=... to stage into a directory)"
fi

# ---------------------------------------------------------------------------------------------
# Output: one line per item. In --dry-run the verbs become "would install" etc.
CHANGES=0
report() { # VERB PATH [NOTE...]
  local verb=$1 path=$2; shift 2
  if [ "$verb" != unchanged ] && [ "$verb" != kept ]; then CHANGES=$((CHANGES + 1)); fi
  if [ "$DRY" -eq 1 ]; then
    case $verb in
      installed) verb="would install" ;; updated) verb="would update" ;;
      removed) verb="would remove" ;; created) verb="would create" ;; kept) verb="would keep" ;;
      loaded) verb="would load" ;; unloaded) verb="would unload" ;;
    esac
  fi
  echo "$verb $path${*:+ $*}"
}
note() { echo "note: $*"; }
run() { # COMMAND...: run it, or in --dry-run only say so
  if [ "$DRY" -eq 1 ]; then echo "would run: $*"; else "$@"; fi
}

sha() { sha256sum <"$1" | cut -c1-64; }
exists() { [ -e "$1" ] || [ -L "$1" ]; }

# ---------------------------------------------------------------------------------------------
# The manifest: one line per item we wrote, "KIND VALUE PATH" (paths without DESTDIR):
#   file SHA256 PATH | symlink TARGET PATH | hardlink SOURCE PATH | dir - PATH
declare -A OLD_KIND=() OLD_VAL=() NEW_KIND=() NEW_VAL=()
OLD_ORDER=()
NEW_ORDER=()
load_manifest() {
  local kind val path
  [ -f "$D$MANIFEST" ] || return 0
  while read -r kind val path; do
    case $kind in file|symlink|hardlink|dir) ;; *) continue ;; esac
    [ -n "$path" ] || continue
    [ -n "${OLD_KIND[$path]:-}" ] || OLD_ORDER+=("$path")
    OLD_KIND[$path]=$kind
    OLD_VAL[$path]=$val
  done <"$D$MANIFEST"
}
record() { # KIND VALUE PATH
  [ -n "${NEW_KIND[$3]:-}" ] || NEW_ORDER+=("$3")
  NEW_KIND[$3]=$1
  NEW_VAL[$3]=$2
}
old_sha() { if [ "${OLD_KIND[$1]:-}" = file ]; then echo "${OLD_VAL[$1]}"; fi; }

# ---------------------------------------------------------------------------------------------
# Primitive installers. Each compares, reports one line and records what it wrote.

# ensure_dir PATH: create it (and missing parents); directories we create are ours.
# Parents are visited first even when DIR exists, so the manifest order is the same every run.
ensure_dir() {
  local dir=$1 parent=${1%/*}
  [ -z "$parent" ] || ensure_dir "$parent"
  if [ -d "$D$dir" ]; then
    if [ "${OLD_KIND[$dir]:-}" = dir ]; then record dir - "$dir"; fi
    return 0
  fi
  exists "$D$dir" && die "$dir exists and is not a directory"
  [ "$DRY" -eq 1 ] || mkdir -m 0755 "$D$dir"
  report created "$dir/"
  record dir - "$dir"
}

# write_file SRC TARGET MODE: atomic replace (temp file beside it, then rename).
write_file() {
  [ "$DRY" -eq 1 ] && return 0
  local tmp
  tmp="$(dirname "$2")/.$(basename "$2").vah-install.$$"
  install -m "$3" "$1" "$tmp"
  mv -f "$tmp" "$2"
}

# put_file SRC PATH MODE CLASS
#   CLASS plain:    ours, always brought up to date (binaries)
#         conf:     configuration; keep the admin's edits, new version in PATH.new
#         dist:     same, new version in PATH.dpkg-dist (apparmor.d, logrotate.d skip that suffix)
#         ifmissing: only if absent or still exactly what we installed; never a side copy
# Sets PUT_CHANGED=1 when PATH was (or would be) written.
PUT_CHANGED=0
put_file() {
  local src=$1 path=$2 mode=$3 class=$4
  local t=$D$path new cur old
  PUT_CHANGED=0
  if [ -f "$src" ]; then new=$(sha "$src")
  elif [ "$DRY" -eq 1 ]; then new=unbuilt   # --dry-run before a build
  else die "$src is missing"
  fi
  old=$(old_sha "$path")
  if ! exists "$t"; then
    write_file "$src" "$t" "$mode"; PUT_CHANGED=1
    report installed "$path"; record file "$new" "$path"; return 0
  fi
  if [ -L "$t" ] || [ ! -f "$t" ]; then
    [ "$class" = plain ] && die "$path exists and is not a regular file; remove it first"
    report kept "$path" "(not a regular file; left alone)"; return 0
  fi
  cur=$(sha "$t")
  if [ "$cur" = "$new" ]; then
    if [ "$(stat -c %a "$t")" != "${mode#0}" ]; then
      [ "$DRY" -eq 1 ] || chmod "$mode" "$t"
      report updated "$path" "(mode $mode)"
    else
      report unchanged "$path"
    fi
    record file "$new" "$path"
    drop_side_copy "$path" "$class"
    return 0
  fi
  if [ "$class" = plain ] || [ "$cur" = "$old" ]; then
    write_file "$src" "$t" "$mode"; PUT_CHANGED=1
    report updated "$path"; record file "$new" "$path"; return 0
  fi
  # Edited by the admin since we installed it, or not ours at all: leave it.
  [ -z "$old" ] || record file "$old" "$path"
  case $class in
    ifmissing) report kept "$path" "(not installed by virt-aa-hook; left alone)" ;;
    *)
      if [ -n "$old" ] && [ "$new" = "$old" ]; then
        # Like dpkg: our version did not change since, so there is nothing new to offer.
        report kept "$path" "(changed locally; left as it is: our version did not change)"
        return 0
      fi
      local side; side=$path$(side_suffix "$class")
      report kept "$path" "(changed locally; the new version goes to $side)"
      put_file "$src" "$side" "$mode" plain
      PUT_CHANGED=0   # PATH itself was not written
      ;;
  esac
}
side_suffix() { if [ "$1" = conf ]; then echo .new; else echo .dpkg-dist; fi; }

# A side copy (.new/.dpkg-dist) we left earlier is stale once PATH matches the new version again.
drop_side_copy() {
  local path=$1 class=$2 side
  case $class in conf|dist) ;; *) return 0 ;; esac
  side=$path$(side_suffix "$class")
  if [ -f "$D$side" ] && [ -n "$(old_sha "$side")" ] && [ "$(sha "$D$side")" = "$(old_sha "$side")" ]; then
    [ "$DRY" -eq 1 ] || rm -f "$D$side"
    report removed "$side" "(stale copy: $path is current)"
  fi
}

# ensure_symlink PATH TARGET: returns 1 (and does nothing) if PATH exists and is something else.
ensure_symlink() {
  local path=$1 target=$2 t=$D$1
  if [ -L "$t" ] && [ "$(readlink "$t")" = "$target" ]; then
    report unchanged "$path -> $target"; record symlink "$target" "$path"; return 0
  fi
  exists "$t" && return 1
  [ "$DRY" -eq 1 ] || ln -s "$target" "$t"
  report installed "$path -> $target"; record symlink "$target" "$path"
}

# ensure_hardlink PATH SOURCE [FORCE]: PATH is the same inode as SOURCE.
ensure_hardlink() {
  local path=$1 source=$2 force=${3:-0} t=$D$1
  if [ "$force" -eq 0 ] && [ "$t" -ef "$D$source" ]; then
    report unchanged "$path" "(hard link)"; record hardlink "$source" "$path"; return 0
  fi
  local verb=installed
  exists "$t" && verb=updated
  if [ "$DRY" -eq 0 ]; then
    local tmp; tmp="$(dirname "$t")/.$(basename "$t").vah-install.$$"
    ln -f "$D$source" "$tmp"
    mv -f "$tmp" "$t"
  fi
  report "$verb" "$path" "(hard link to $source)"; record hardlink "$source" "$path"
}

# is_ours PATH: PATH is a symlink to our binary.
is_ours() { [ -L "$D$1" ] && [ "$(readlink "$D$1")" = "$BIN" ]; }

kernel_has_apparmor() {
  [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] &&
    [ -d /sys/kernel/security/apparmor ]
}
profile_loaded() {
  grep -q "^$PROFILE_NAME (" /sys/kernel/security/apparmor/profiles 2>/dev/null
}
find_parser() {
  local p
  for p in /usr/sbin/apparmor_parser /sbin/apparmor_parser /usr/bin/apparmor_parser; do
    if [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

# Make the running daemon rescan the hooks directory (it caches what it found at start).
notify_libvirt() {
  local d pids any=0
  for d in libvirtd virtqemud; do
    pids=$(pidof "$d" || true)
    [ -n "$pids" ] || continue
    any=1
    if [ -d /run/systemd/system ] && systemctl is-active --quiet "$d.service" 2>/dev/null; then
      run systemctl reload "$d.service"
      echo "reloaded $d (systemctl reload): it rescans the hooks"
    else
      # shellcheck disable=SC2086 # pidof prints a space-separated list
      run kill -HUP $pids
      echo "sent SIGHUP to $d (pid $pids): it rescans the hooks"
    fi
  done
  [ "$any" -eq 1 ] || note "neither libvirtd nor virtqemud is running; they read the hooks when they start"
}


# ---------------------------------------------------------------------------------------------
# Helper mode: libvirt's AppArmor driver runs $VAH_HELPER for every start and relabel; we divert
# the distribution's binary and put a symlink to ours in its place. Kept apart and small so a
# .deb can run the same steps in postinst (helper_mode_install) and prerm (helper_mode_remove).
# The symlink resolves to $BIN, so libvirtd's "/usr/lib/libvirt/* PUxr" lands in OUR profile
# (usr.lib.libvirt.virt-aa-hook), which already allows our log, state, profile writes and
# apparmor_parser: the distribution's usr.lib.libvirt.virt-aa-helper profile is not touched.
helper_mode_installed() {
  [ -L "$D$VAH_HELPER" ] && [ "$(readlink "$D$VAH_HELPER")" = "$BIN" ]
}
helper_mode_install() {
  if helper_mode_installed; then report unchanged "$VAH_HELPER -> $BIN" "(helper mode)"; return 0; fi
  if [ -n "$D" ]; then note "DESTDIR: helper mode is set up by the package's postinst, not staged"; return 0; fi
  if ! exists "$VAH_HELPER" && ! exists "$VAH_DISTRIB"; then
    note "no $VAH_HELPER (libvirt built without AppArmor support?): helper mode not installed"; return 0
  fi
  command -v dpkg-divert >/dev/null 2>&1 || { note "no dpkg-divert: helper mode not installed"; return 0; }
  if [ -L "$VAH_HELPER" ] || { exists "$VAH_DISTRIB" && exists "$VAH_HELPER"; }; then
    note "$VAH_HELPER is not libvirt's binary and not ours: helper mode not installed"; return 0
  fi
  run dpkg-divert --quiet --package virt-aa-hook --rename \
    --divert "$VAH_DISTRIB" --add "$VAH_HELPER"
  run ln -s "$BIN" "$VAH_HELPER"
  report installed "$VAH_HELPER -> $BIN" "(helper mode; libvirt's helper diverted to $VAH_DISTRIB)"
}
helper_mode_remove() {
  if helper_mode_installed; then
    run rm -f "$VAH_HELPER"
    report removed "$VAH_HELPER -> $BIN"
  fi
  if [ -z "$D" ] && command -v dpkg-divert >/dev/null 2>&1 &&
    dpkg-divert --listpackage "$VAH_HELPER" 2>/dev/null | grep -qx virt-aa-hook; then
    run dpkg-divert --quiet --package virt-aa-hook --rename --remove "$VAH_HELPER"
    report restored "$VAH_HELPER" "(libvirt's own helper, from $VAH_DISTRIB)"
  fi
}

# ---------------------------------------------------------------------------------------------
do_uninstall() {
  [ -f "$D$MANIFEST" ] || die "not installed: no manifest at $D$MANIFEST"
  load_manifest

  # Guests whose <emulator> is one of our wrappers would no longer start.
  local users=()
  local xml
  for xml in "$D"/etc/libvirt/qemu/*.xml; do
    if grep -qF "$LIBDIR/virt-aa-hook." "$xml"; then users+=("$(basename "$xml" .xml)"); fi
  done
  if [ ${#users[@]} -gt 0 ]; then
    die "guest(s) ${users[*]} use virt-aa-hook's emulator wrapper; run 'virt-aa-hook unenroll GUEST' for each, then uninstall again"
  fi

  # libvirt's own helper back first: after this, nothing runs our binary as virt-aa-helper.
  helper_mode_remove

  # Unload the binary's own profile while its file is still there.
  if [ -z "$D" ] && kernel_has_apparmor && profile_loaded; then
    local parser
    if parser=$(find_parser) && [ -f "$AAPROFILE" ]; then
      run "$parser" -R "$AAPROFILE" >/dev/null
    else
      [ "$DRY" -eq 1 ] || echo -n "$PROFILE_NAME" >/sys/kernel/security/apparmor/.remove
    fi
    report unloaded "AppArmor profile $PROFILE_NAME"
  fi

  # Files and links first (newest first: wrappers before the binary they link to), then dirs.
  local i path kind val t
  for ((i = ${#OLD_ORDER[@]} - 1; i >= 0; i--)); do
    path=${OLD_ORDER[$i]} kind=${OLD_KIND[$path]} val=${OLD_VAL[$path]} t=$D$path
    case $kind in
      file)
        if [ -L "$t" ] || [ ! -e "$t" ]; then continue; fi
        if [ "$(sha "$t")" = "$val" ]; then
          [ "$DRY" -eq 1 ] || rm -f "$t"; report removed "$path"
        else
          report kept "$path" "(changed since it was installed)"
        fi ;;
      symlink)
        [ -L "$t" ] || continue
        if [ "$(readlink "$t")" = "$val" ]; then
          [ "$DRY" -eq 1 ] || rm -f "$t"; report removed "$path"
        else
          report kept "$path" "(no longer points to $val)"
        fi ;;
      hardlink)
        exists "$t" || continue
        if [ "$t" -ef "$D$val" ] || { [ -f "$t" ] && [ ! -L "$t" ] && [ "$(sha "$t")" = "$(old_sha "$val")" ]; }; then
          [ "$DRY" -eq 1 ] || rm -f "$t"; report removed "$path"
        else
          report kept "$path" "(not a link to $val any more)"
        fi ;;
    esac
  done
  [ "$DRY" -eq 1 ] || rm -f "$D$MANIFEST"
  report removed "$MANIFEST"
  for ((i = ${#OLD_ORDER[@]} - 1; i >= 0; i--)); do
    path=${OLD_ORDER[$i]}
    if [ "${OLD_KIND[$path]}" != dir ] || [ ! -d "$D$path" ]; then continue; fi
    if [ "$DRY" -eq 1 ]; then
      report removed "$path/" "(if empty)"
    elif rmdir "$D$path" 2>/dev/null; then
      report removed "$path/"
    else
      report kept "$path/" "(not empty)"
    fi
  done

  if [ -z "$D" ]; then notify_libvirt; fi
  note "guest profiles in /etc/apparmor.d/libvirt/ and your rules in $LOCALDIR/ were left in place;"
  note "libvirt's virt-aa-helper manages guest profiles from now on (to clean up profiles of deleted"
  note "guests, run 'virt-aa-hook gc' before uninstalling, or delete /etc/apparmor.d/libvirt/libvirt-<uuid> by hand)"
}

# ---------------------------------------------------------------------------------------------
ensure_deps() {
  local pkgs=(apparmor) missing=() p
  [ "$BUILD" -eq 0 ] || pkgs+=(libvirt-dev pkg-config)
  if ! command -v dpkg-query >/dev/null 2>&1; then
    note "not a dpkg system: make sure ${pkgs[*]} (or your distro's names for them) are installed"
    return 0
  fi
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$DRY" -eq 1 ]; then echo "would run: apt-get install -y ${missing[*]}"; return 0; fi
  echo "installing missing packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

build() {
  local cargo="" c
  for c in "$(command -v cargo || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" /root/.cargo/bin/cargo; do
    if [ -n "$c" ] && [ -x "$c" ]; then cargo=$c; break; fi
  done
  [ -n "$cargo" ] || die "cargo not found: install Rust with rustup (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh; then . ~/.cargo/env), or use --no-build with binaries in target/release"
  local args=(build --release)
  [ ! -f "$SRC/Cargo.lock" ] || args+=(--locked)
  if [ "$DRY" -eq 1 ]; then echo "would run: (cd $SRC && cargo ${args[*]})"; return 0; fi
  echo "building: cargo ${args[*]}"
  (cd "$SRC" && "$cargo" "${args[@]}") || die "cargo ${args[*]} failed"
}

do_install() {
  if [ -z "$D" ]; then ensure_deps; fi
  if [ "$BUILD" -eq 1 ]; then build; fi
  if [ "$DRY" -eq 0 ]; then
    [ -x "$BUILT/virt-aa-hook" ] || die "$BUILT/virt-aa-hook is missing (build first or drop --no-build)"
    [ -x "$BUILT/virt-aa-hook-libvirt" ] || die "$BUILT/virt-aa-hook-libvirt is missing (build first or drop --no-build)"
  fi
  [ "$PREFIX" = /usr ] || note "prefix $PREFIX: libvirtd's AppArmor profile only lets hooks in /usr/lib/libvirt/ out of its confinement"
  if [ -n "$D" ] && [ "$DRY" -eq 0 ]; then mkdir -p "$D" || die "cannot create DESTDIR $D"; fi

  load_manifest

  # The binary's profile names /usr/lib/libvirt/; follow --prefix (rules only, not comments).
  local stage; stage=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the trap must remove this directory
  trap "rm -rf '$stage'" EXIT
  sed "/^[[:space:]]*#/!s|/usr/lib/libvirt/|$LIBDIR/|g" \
    "$SRC/install/apparmor/usr.lib.libvirt.virt-aa-hook" >"$stage/profile"

  # Refuse to install a profile that does not compile.
  local parser=""
  if parser=$(find_parser); then
    local inc=(-I /etc/apparmor.d)
    [ -z "$D" ] || [ ! -d "$D/etc/apparmor.d" ] || inc=(-I "$D/etc/apparmor.d" "${inc[@]}")
    "$parser" -Q -K "${inc[@]}" "$stage/profile" 2>"$stage/err" ||
      die "install/apparmor/usr.lib.libvirt.virt-aa-hook does not compile: $(grep -v 'Cache read/write disabled' "$stage/err" | head -n1)"
  else
    note "apparmor_parser not found: installing the AppArmor profile without a compile check"
  fi

  # 1. Binaries and the admin command.
  ensure_dir "$LIBDIR"
  put_file "$BUILT/virt-aa-hook" "$BIN" 0755 plain
  local bin_replaced=$PUT_CHANGED
  put_file "$BUILT/virt-aa-hook-libvirt" "$ADMIN" 0755 plain
  ensure_dir "$PREFIX/sbin"
  ensure_symlink "$SBIN_LINK" "$BIN" ||
    report kept "$SBIN_LINK" "(exists and is not virt-aa-hook's; left alone)"

  # 2. Emulator wrappers: one hard link per emulator, refreshed when the binary was replaced.
  local emu
  for emu in "$EMULATOR_DIR"/qemu-system-*; do
    if [ ! -f "$emu" ] || [ ! -x "$emu" ]; then continue; fi
    ensure_hardlink "$LIBDIR/virt-aa-hook.${emu##*/}" "$BIN" "$bin_replaced"
  done
  local path
  for path in "${OLD_ORDER[@]}"; do     # wrappers whose emulator is gone
    if [ "${OLD_KIND[$path]}" = hardlink ] && [ -z "${NEW_KIND[$path]:-}" ] && [ -f "$D$path" ]; then
      [ "$DRY" -eq 1 ] || rm -f "$D$path"
      report removed "$path" "(its emulator is gone)"
    fi
  done

  # 3. Configuration.
  ensure_dir /etc/libvirt
  put_file "$SRC/hooks/template.qemu" "$TEMPLATE" 0644 conf
  put_file "$SRC/install/virt-aa-hook.conf" "$CONF" 0644 conf
  ensure_dir /etc/apparmor.d
  ensure_dir "$LOCALDIR"
  put_file "$SRC/install/local-README" "$LOCALDIR/README" 0644 dist
  put_file "$stage/profile" "$AAPROFILE" 0644 dist
  local profile_changed=$PUT_CHANGED
  if exists "$D$ABSTRACTION" && [ "${OLD_KIND[$ABSTRACTION]:-}" != file ]; then
    report unchanged "$ABSTRACTION" "(the distribution's)"
  else
    ensure_dir "${ABSTRACTION%/*}"
    put_file "$SRC/install/apparmor/libvirt-qemu.minimal" "$ABSTRACTION" 0644 ifmissing
  fi
  ensure_dir /etc/logrotate.d
  put_file "$SRC/install/logrotate/virt-aa-hook" "$LOGROTATE" 0644 dist
  ensure_dir "$STATE"

  # 4. The hook entry, last: libvirt may run it as soon as it exists.
  ensure_dir "$HOOKS"
  if is_ours "$HOOK_MAIN"; then
    ensure_symlink "$HOOK_MAIN" "$BIN"
  elif is_ours "$HOOK_D"; then
    ensure_dir "${HOOK_D%/*}"
    ensure_symlink "$HOOK_D" "$BIN"
  elif ! exists "$D$HOOK_MAIN"; then
    ensure_symlink "$HOOK_MAIN" "$BIN"
  else
    note "$HOOK_MAIN exists and is not virt-aa-hook's: leaving it alone and using $HOOK_D"
    ensure_dir "${HOOK_D%/*}"
    ensure_symlink "$HOOK_D" "$BIN" || die "$HOOK_D exists and is not a symlink to $BIN; remove it and run again"
  fi

  # 4b. Helper mode (after the binary and its profile are in place).
  if [ "$HELPER_MODE" -eq 1 ]; then helper_mode_install; else helper_mode_remove; fi

  # 5. The manifest: what we wrote now, plus older entries that still exist (e.g. kept files).
  for path in "${OLD_ORDER[@]}"; do
    if [ -z "${NEW_KIND[$path]:-}" ] && [ "${OLD_KIND[$path]}" != hardlink ] && exists "$D$path"; then
      record "${OLD_KIND[$path]}" "${OLD_VAL[$path]}" "$path"
    fi
  done
  {
    echo "# virt-aa-hook install manifest: what install/install.sh wrote (KIND VALUE PATH)."
    echo "# Used by re-runs and --uninstall to tell our files (and edits to them) apart. Do not edit."
    for path in "${NEW_ORDER[@]}"; do echo "${NEW_KIND[$path]} ${NEW_VAL[$path]} $path"; done
  } >"$stage/manifest"
  if [ -f "$D$MANIFEST" ] && cmp -s "$stage/manifest" "$D$MANIFEST"; then
    :
  else
    local verb=installed
    [ ! -f "$D$MANIFEST" ] || verb=updated
    write_file "$stage/manifest" "$D$MANIFEST" 0644
    report "$verb" "$MANIFEST"
  fi

  if [ "$CHANGES" -eq 0 ]; then
    echo "nothing to do: already installed"
    return 0
  fi
  if [ -n "$D" ] || [ "$DRY" -eq 1 ]; then
    if [ "$DRY" -eq 1 ] && [ -z "$D" ]; then
      echo "would then: load the AppArmor profile (if the kernel has AppArmor), refresh the capability cache, signal libvirt, run virt-aa-hook doctor"
    fi
    return 0
  fi

  # 6. Live system only: load the profile, fill the capability cache, tell libvirt, check.
  if kernel_has_apparmor; then
    if [ "$profile_changed" -eq 1 ] || ! profile_loaded; then
      [ -n "$parser" ] || die "apparmor_parser not found; cannot load $AAPROFILE"
      "$parser" -r "$AAPROFILE" || die "apparmor_parser -r $AAPROFILE failed"
      report loaded "AppArmor profile $PROFILE_NAME"
    fi
  else
    note "the kernel has no AppArmor enabled: $AAPROFILE is installed but not loaded"
  fi
  if timeout 60 "$ADMIN" caps --refresh </dev/null >/dev/null 2>&1; then
    echo "refreshed the capability cache"
  else
    note "capability cache refresh failed (exit $?); the hook refreshes it itself when needed"
  fi
  notify_libvirt
  echo "--- virt-aa-hook doctor"
  local rc=0
  "$BIN" doctor </dev/null || rc=$?
  [ "$rc" -eq 0 ] || note "virt-aa-hook doctor exited with status $rc (see above); the installation itself is complete"
}

if [ "$UNINSTALL" -eq 1 ]; then do_uninstall; else do_install; fi
