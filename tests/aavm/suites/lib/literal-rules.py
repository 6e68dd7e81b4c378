#!/usr/bin/python3
"""literal-rules.py RULES...: split each file of `virt-aa-hook generate` rule lines
(`  "<pattern>" <perms>,`) into RULES.lit, `<perms>\\0<path>\\0` for every pattern that is one
literal path, and RULES.others, every other rule line as it is.

AppArmor escapes (`\\x` -> `x`) are undone; a pattern with an unescaped glob or variable
character (`* ? [ ] { }`) is not a literal path, nor is a path under /dev, /proc or /sys (device
nodes and kernel files cannot be created as plain files): those go to RULES.others."""
import sys

GLOB = set('*?[]{}')
SKIP_PREFIXES = ('/dev/', '/proc/', '/sys/')


def parse(line):
    line = line.strip()
    if not line.startswith('"'):
        return None
    i, out, literal = 1, [], True
    while i < len(line):
        c = line[i]
        # Our hex escapes of a literal character: \x5c (backslash), \x40 (@), \x23 (#).
        if line.startswith('\\x', i) and len(line) >= i + 4 and all(
                ch in '0123456789abcdefABCDEF' for ch in line[i + 2:i + 4]):
            out.append(chr(int(line[i + 2:i + 4], 16)))
            i += 4
            continue
        if c == '\\' and i + 1 < len(line):
            out.append(line[i + 1])
            i += 2
            continue
        if c == '"':
            break
        if c in GLOB:
            literal = False
        out.append(c)
        i += 1
    else:
        return None
    rest = line[i + 1:].strip().rstrip(',').strip()
    return ''.join(out), rest, literal


def split(rules_file):
    """RULES -> RULES.lit (`perms\\0path\\0` per literal path) + RULES.others (the other rules)."""
    with open(rules_file) as src, open(rules_file + '.lit', 'w') as lit, \
            open(rules_file + '.others', 'w') as others:
        for raw in src:
            r = parse(raw)
            if r is None:
                continue
            path, perms, literal = r
            if literal and path.startswith('/') and not (
                    path.startswith(SKIP_PREFIXES) or path in ('/dev', '/proc', '/sys')):
                lit.write(perms + '\0' + path + '\0')
            else:
                others.write(raw)


for f in sys.argv[1:]:
    split(f)
