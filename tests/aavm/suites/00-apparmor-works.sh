#!/usr/bin/env bash
# Suite 00, run INSIDE an aavm VM by tests/aavm/suite.sh as `00-apparmor-works.sh REPO`:
# AppArmor is enabled in the guest kernel and confines (a tiny profile is loaded with
# apparmor_parser, allowed/denied reads under aa-exec, the DENIED audit line in dmesg).
# The assertions live in tests/aavm/selftest.sh, which the runner's own test uses too.
set -u
repo=${1:-$(cd "$(dirname "$0")/../../.." && pwd)}
exec "$repo/tests/aavm/selftest.sh"
