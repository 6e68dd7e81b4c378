#!/bin/bash
# aavm wrapper: run the caller's script with the caller's cwd and arguments (quoted by the host).
. /run/aavm/share/env || exit 125
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb AAVM=1
[ -n "$AAVM_SHARE" ] && export AAVM_SHARE
cd "$AAVM_CWD" || { echo "aavm: cannot cd to $AAVM_CWD inside the VM"; exit 125; }
[ "$AAVM_EXEC" = sh ] && exec /bin/sh "${AAVM_ARGV[@]}"
exec "${AAVM_ARGV[@]}"
