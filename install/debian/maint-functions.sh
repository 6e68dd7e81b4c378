# shellcheck shell=sh
# What virt-aa-hook's maintainer scripts share: the paths, the marked lines we add to other
# profiles' local includes, and every step with its undo side by side (postinst does, prerm
# undoes). Installed at /usr/share/virt-aa-hook/maint-functions.sh and sourced (POSIX sh, the
# caller's `set -e`) by postinst (configure, triggered) and prerm (remove, deconfigure): the
# package's files are on disk then — unpacked before configure, removed only after prerm
# remove. Not in the other branches: in `prerm failed-upgrade` the new version's files are not
# unpacked yet. postrm cannot source it (at purge the file is gone): it keeps its own PROFILES
# line, which tests/generate.rs checks against install/apparmor/ as it checks this file's.

BIN=/usr/lib/libvirt/virt-aa-hook
# Our own AppArmor profiles: the hook's (with its apparmor_parser child) and the libvirt-linked
# admin binary's.
PROFILES="usr.lib.libvirt.virt-aa-hook usr.lib.libvirt.virt-aa-hook-libvirt"
HOOKS=/etc/libvirt/hooks

aa_enabled() { command -v aa-enabled >/dev/null 2>&1 && aa-enabled --quiet 2>/dev/null; }
# reload_profile FILE: (re)load an AppArmor profile that is there, where AppArmor is enabled.
reload_profile() {
    if [ -f "$1" ] && aa_enabled; then
        apparmor_parser -r -T -W "$1" || true
    fi
}

# Our marked lines in the local include of someone else's profile: added once, removed again by
# prerm; the rest of the file is the admin's. The profile is reloaded when its include changed.
# marked_line_add LOCAL-FILE LINE PROFILE-FILE / marked_line_remove LOCAL-FILE LINE PROFILE-FILE
marked_line_add() {
    if [ -f "$1" ] && grep -qxF "$2" "$1"; then
        return 0
    fi
    mkdir -p "${1%/*}"
    printf '%s\n' "$2" >>"$1"
    reload_profile "$3"
}
marked_line_remove() {
    if [ -f "$1" ] && grep -qxF "$2" "$1"; then
        grep -vxF "$2" "$1" >"$1.vah-tmp" || true
        cat "$1.vah-tmp" >"$1"
        rm -f "$1.vah-tmp"
        reload_profile "$3"
    fi
}

is_ours() { [ "$(readlink "$1" 2>/dev/null)" = "$BIN" ]; }

# --- helper mode (README "Helper mode") ----------------------------------------------------
# libvirt's AppArmor driver runs /usr/lib/libvirt/virt-aa-helper at every label and relabel;
# diverting the distribution's binary (kept as .distrib, restored on removal) and linking ours
# there sends every relabel through our generator. AppArmor checks an exec against the link's
# target, so libvirtd's PUxr rule puts it in OUR profile: no distribution file is edited (the
# one line below goes into the admin's local include of libvirt's helper profile).
# Opt-out: `helper_mode = false` in the config (then `dpkg-reconfigure virt-aa-hook`), or
# VIRT_AA_HOOK_HELPER_MODE=no in the environment of the install (install.sh --no-helper-mode).
HELPER=/usr/lib/libvirt/virt-aa-helper
# The diverted helper runs under the distribution's profile (`PUx -> virt-aa-helper` in ours),
# which maps only /usr/lib/libvirt/virt-aa-helper: one line in that profile's local include
# lets it map the binary at its diverted path. The line is ours (marked), added while the
# diversion exists and removed with it.
HELPER_PROFILE=/etc/apparmor.d/usr.lib.libvirt.virt-aa-helper
HELPER_LOCAL=/etc/apparmor.d/local/usr.lib.libvirt.virt-aa-helper
HELPER_RULE="$HELPER.distrib mr, # virt-aa-hook: helper mode (libvirt's helper, diverted)"
helper_mode_wanted() {
    [ "${VIRT_AA_HOOK_HELPER_MODE:-}" != no ] &&
        ! grep -Eq '^[[:space:]]*helper_mode[[:space:]]*=[[:space:]]*false' /etc/libvirt/virt-aa-hook.conf 2>/dev/null
}
divert_helper() {
    if ! helper_mode_wanted; then
        undivert_helper
        return 0
    fi
    if dpkg-divert --listpackage "$HELPER" 2>/dev/null | grep -qx virt-aa-hook; then
        [ -L "$HELPER" ] || ln -s "$BIN" "$HELPER"
        marked_line_add "$HELPER_LOCAL" "$HELPER_RULE" "$HELPER_PROFILE"
        return 0
    fi
    # Only libvirt's own binary is diverted: nothing there (libvirt without AppArmor support, or
    # not installed yet: the file trigger on $HELPER brings us back when it is) or a link of
    # someone else's is left alone.
    [ -f "$HELPER" ] && [ ! -L "$HELPER" ] || return 0
    dpkg-divert --quiet --package virt-aa-hook --rename --divert "$HELPER.distrib" --add "$HELPER"
    ln -s "$BIN" "$HELPER"
    marked_line_add "$HELPER_LOCAL" "$HELPER_RULE" "$HELPER_PROFILE"
}
# Give libvirt its own virt-aa-helper back (prerm, and postinst when helper mode is off).
undivert_helper() {
    if is_ours "$HELPER"; then
        rm -f "$HELPER"
    fi
    if dpkg-divert --listpackage "$HELPER" 2>/dev/null | grep -qx virt-aa-hook; then
        dpkg-divert --quiet --package virt-aa-hook --rename --remove "$HELPER"
    fi
    marked_line_remove "$HELPER_LOCAL" "$HELPER_RULE" "$HELPER_PROFILE"
}

# --- the daemons' profiles ------------------------------------------------------------------
# The daemons read /proc/<pid>/stat of each client that connects (its identity); the admin
# binary runs under its own profile, which the distribution's daemon profiles do not name, so
# every admin command drew a DENIED ptrace line of libvirtd's (aavm suite 02). One marked line in
# each daemon profile's local include lets them read it.
DAEMON_PROFILES="usr.sbin.libvirtd usr.sbin.virtqemud"
DAEMON_RULE="ptrace (read) peer=virt-aa-hook-libvirt, # virt-aa-hook: the daemon reads its admin client's /proc entry"
daemon_rules_add() {
    for d in $DAEMON_PROFILES; do
        [ -f "/etc/apparmor.d/$d" ] || continue
        marked_line_add "/etc/apparmor.d/local/$d" "$DAEMON_RULE" "/etc/apparmor.d/$d"
    done
}
daemon_rules_remove() {
    for d in $DAEMON_PROFILES; do
        marked_line_remove "/etc/apparmor.d/local/$d" "$DAEMON_RULE" "/etc/apparmor.d/$d"
    done
}

# --- our own profiles -----------------------------------------------------------------------
# As dh_apparmor does it: the local/ includes first (the profiles include them "if exists", but
# admins expect the files), then load where AppArmor is enabled.
load_profiles() {
    for p in $PROFILES; do
        local_file=/etc/apparmor.d/local/$p
        if [ ! -e "$local_file" ]; then
            mkdir -p "${local_file%/*}"
            printf '# Site-specific additions for %s (see %s).\n' "$p" "/etc/apparmor.d/$p" >"$local_file"
        fi
    done
    for p in $PROFILES; do
        reload_profile "/etc/apparmor.d/$p"
    done
}
# The binaries' own profiles (not a guest's): unloaded while their files are still there. Guest
# profiles are never unloaded: running guests keep their confinement.
unload_profiles() {
    if aa_enabled; then
        for p in $PROFILES; do
            apparmor_parser -R "/etc/apparmor.d/$p" 2>/dev/null || true
        done
    fi
}

# --- the hook -------------------------------------------------------------------------------
# libvirt runs hooks/qemu; when the admin already has one, hooks/qemu.d/50-virt-aa-hook
# (libvirt runs both). A path that is not our symlink is never touched.
link_hook() {
    if is_ours "$HOOKS/qemu" || is_ours "$HOOKS/qemu.d/50-virt-aa-hook"; then
        return 0
    fi
    mkdir -p "$HOOKS"
    if [ ! -e "$HOOKS/qemu" ] && [ ! -L "$HOOKS/qemu" ]; then
        ln -s "$BIN" "$HOOKS/qemu"
    elif [ ! -e "$HOOKS/qemu.d/50-virt-aa-hook" ] && [ ! -L "$HOOKS/qemu.d/50-virt-aa-hook" ]; then
        echo "virt-aa-hook: $HOOKS/qemu is not ours: using $HOOKS/qemu.d/50-virt-aa-hook"
        mkdir -p "$HOOKS/qemu.d"
        ln -s "$BIN" "$HOOKS/qemu.d/50-virt-aa-hook"
    else
        echo "virt-aa-hook: warning: $HOOKS/qemu and $HOOKS/qemu.d/50-virt-aa-hook both exist and are" \
            "not ours; link $BIN there yourself" >&2
    fi
}
unlink_hook() {
    for p in "$HOOKS/qemu" "$HOOKS/qemu.d/50-virt-aa-hook"; do
        if is_ours "$p"; then rm -f "$p"; fi
    done
}

# A guest whose <emulator> is one of our wrappers would no longer start without the package:
# refuse the removal, say what to do.
check_enrolled() {
    users=$(grep -lF "$BIN." /etc/libvirt/qemu/*.xml 2>/dev/null || true)
    if [ -n "$users" ]; then
        echo "virt-aa-hook: guests using virt-aa-hook's emulator wrapper: $(echo "$users" | tr '\n' ' ')" >&2
        echo "virt-aa-hook: run 'virt-aa-hook unenroll --all' first, then remove the package" >&2
        exit 1
    fi
}

# libvirtd/virtqemud look for hooks at start and again on SIGHUP (a reload; guests keep
# running). Only a running daemon is told; policy-rc.d is honoured through invoke-rc.d.
reload_libvirt() {
    for d in libvirtd virtqemud; do
        if [ -d /run/systemd/system ]; then
            ! systemctl is-active --quiet "$d.service" || deb-systemd-invoke reload "$d.service" || true
        elif pidof "$d" >/dev/null 2>&1; then invoke-rc.d "$d" reload || true; fi
    done
}
