#!/usr/bin/env bash
# Suite 05, run INSIDE an aavm VM as `05-regression-corpus.sh REPO`: every domain XML of the test
# corpus (tests/corpus/*.xml, every device kind, hostile names and paths) gives a profile that the
# kernel loads, whose literal-path rules really grant what they say for exactly that path: the
# path itself opens for reading (perms with r; a directory for rules ending in /) and for
# appending (perms with w) under the profile, and a sibling "<path>.vah-sibling" is refused
# (EACCES). A sibling that the distribution's abstractions/libvirt-qemu or our virt-aa-hook-qemu (e.g. /usr/share/OVMF/**)
# or one of the profile's own glob rules grants anyway is not counted against the literal rule: a
# baseline profile with exactly those decides. One ok/FAIL line per corpus file (FAIL lists the
# failing paths).
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

vah_clean_state
vah_install_or_stop

# The checks run in ONE confined shell per profile (a process per check is slow under TCG). It
# reads "TAG<tab>OP<tab>PATH" lines on stdin (a pipe: not mediated) and opens PATH itself, no
# exec: OP r or d = open for reading (a file, a directory), w = open for appending. It prints
# "OK<tab>TAG<tab>OP<tab>PATH" or "ERR<tab>TAG<tab>OP<tab>PATH<tab>error".
CHECKER='T="	"
while IFS= read -r line; do
  tag=${line%%"$T"*}; rest=${line#*"$T"}; op=${rest%%"$T"*}; p=${rest#*"$T"}
  if [ "$op" = w ]; then err=$( { : >>"$p"; } 2>&1 ); else err=$( { : <"$p"; } 2>&1 ); fi \
    && echo "OK$T$tag$T$op$T$p" || echo "ERR$T$tag$T$op$T$p$T$err"
done'
check_as() { aa-exec -p "$1" -- /bin/sh -c "$CHECKER"; }   # check_as PROFILE <TESTS
TAB=$'\t'
W=/tmp/vah-corpus; mkdir -p $W

# Generate everything first, then split all rule lists in one python run.
for xml in tests/corpus/*.xml; do
  name=$(basename "$xml" .xml)
  virt-aa-hook generate --no-probe --mode standalone "$xml" >$W/$name.rules 2>$W/$name.err
done
python3 tests/aavm/suites/lib/literal-rules.py $W/*.rules

for xml in tests/corpus/*.xml; do
  name=$(basename "$xml" .xml)
  uuid=$(sed -n 's|.*<uuid>\(.*\)</uuid>.*|\1|p' "$xml" | head -n1)
  P=libvirt-$uuid; F=/etc/apparmor.d/libvirt/$P
  if ! virt-aa-hook generate --profile --mode standalone --no-probe "$xml" >"$F" 2>$W/$name.err; then
    fail "$name: generate --profile: $(cat $W/$name.err)"; continue
  fi
  if ! out=$(apparmor_parser -r "$F" 2>&1); then fail "$name: apparmor_parser -r: $out"; continue; fi
  if [ "$(loaded_mode "$P")" != enforce ]; then fail "$name: $P not loaded in enforce mode"; continue; fi
  nrules=$(grep -c '^  "' $W/$name.rules)
  nother=$(grep -c '^  "' $W/$name.rules.others)

  # Lay out the files (builtins only, one mkdir) and write the list of checks.
  n=0 nskip=0 dirs=() files=()
  : >$W/tests
  while IFS= read -r -d '' perms && IFS= read -r -d '' path; do
    ops=()
    if [[ $path == */ ]]; then
      sib="${path%/}.vah-sibling/"; dirs+=("$path" "$sib")
      [[ $perms == *r* ]] && ops=(d)
    else
      sib="$path.vah-sibling"; dirs+=("${path%/*}"); files+=("$path" "$sib")
      [[ $perms == *r* ]] && ops+=(r)
      [[ $perms == *w* ]] && ops+=(w)
    fi
    if [ ${#ops[@]} -eq 0 ]; then nskip=$((nskip + 1)); continue; fi
    n=$((n + 1))
    for op in "${ops[@]}"; do printf 'P\t%s\t%s\nS\t%s\t%s\n' "$op" "$path" "$op" "$sib" >>$W/tests; done
  done <$W/$name.rules.lit
  [ ${#dirs[@]} -eq 0 ] || mkdir -p "${dirs[@]}"
  for f in "${files[@]}"; do [ -e "$f" ] || : >"$f"; done
  ntests=$(grep -c . $W/tests)

  failures=() nbase=0
  check_as "$P" <$W/tests >$W/results 2>&1
  : >$W/recheck
  while IFS="$TAB" read -r res tag op path err; do
    case $res/$tag in
      OK/P) ;;
      ERR/P) failures+=("$op $path: $err") ;;
      OK/S) printf 'S\t%s\t%s\n' "$op" "$path" >>$W/recheck ;;
      ERR/S) [[ $err == *"Permission denied"* ]] || failures+=("sibling $op $path: not EACCES: $err") ;;
      *) failures+=("checker said: $res $tag $op $path $err") ;;
    esac
  done <$W/results
  nres=$(grep -c . $W/results)
  [ "$nres" -eq "$ntests" ] || failures+=("the checker answered $nres of $ntests opens")
  if [ -s $W/recheck ]; then
    # What the sibling may legitimately get: the abstraction, or another rule of this profile
    # that is a glob (e.g. ".../channel/target/domain-N-name/{,*}").
    { echo '#include <tunables/global>'; echo 'profile vah-baseline flags=(attach_disconnected) {'
      echo '  #include <abstractions/libvirt-qemu>'; echo '  include if exists <abstractions/virt-aa-hook-qemu>'; cat $W/$name.rules.others; echo '}'; } >$W/baseline.profile
    if out=$(apparmor_parser -r $W/baseline.profile 2>&1); then
      check_as vah-baseline <$W/recheck >$W/results2 2>&1
      while IFS="$TAB" read -r res tag op path err; do
        if [ "$res" = OK ]; then nbase=$((nbase + 1)); else failures+=("sibling $op $path allowed by $P only"); fi
      done <$W/results2
    else
      failures+=("baseline profile: $out")
    fi
  fi
  summary="$name: $n literal paths, $ntests opens checked ($nrules rules, $nother of them globs or under /dev,/proc,/sys; $nbase sibling opens granted by the abstraction or a glob rule; $nskip without r/w)"
  if [ ${#failures[@]} -eq 0 ] && [ "$n" -gt 0 ]; then ok "$summary"
  else fail "$summary: ${#failures[@]} failing"; printf '    %s\n' "${failures[@]}"; fi
  echo -n "$P" >/sys/kernel/security/apparmor/.remove
done

# The admin command runs under the hook's own profile (README), whose only write rules are its own
# files; a shell redirect of its output to a file elsewhere must still work.
virt-aa-hook generate --no-probe --mode standalone tests/corpus/01-disks.xml >/tmp/vah-redirect.out 2>/dev/null
if [ -s /tmp/vah-redirect.out ]; then ok "virt-aa-hook generate > /tmp/file writes the file"
else fail "virt-aa-hook generate > /tmp/file leaves it empty: $(denials virt-aa-hook | grep -F vah-redirect.out | tail -n1)"; fi
bad=$(denials virt-aa-hook)
if [ -z "$bad" ]; then ok "no apparmor=\"DENIED\" lines for the admin command's profile virt-aa-hook"
else fail "DENIED lines for virt-aa-hook:"; echo "$bad" | sed 's/^/    /'; fi
finish ""
