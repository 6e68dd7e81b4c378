//! A literal path written as an AppArmor pattern that matches exactly itself.

use std::path::Path;

/// Escape a literal path for use inside a double-quoted AppArmor rule, so it matches exactly
/// itself: every pattern metacharacter (`* ? [ ] { } ^ , "`) gets a backslash; `\`, `@` and `#`
/// are written as hex escapes.
pub fn escape(p: &str) -> String {
    // Most paths have nothing to escape: copy them whole.
    if !p.bytes().any(|b| {
        matches!(
            b,
            b'\\' | b'@' | b'#' | b'*' | b'?' | b'[' | b']' | b'{' | b'}' | b'^' | b',' | b'"'
        )
    }) {
        return p.to_string();
    }
    let mut s = String::with_capacity(p.len() + 8);
    for c in p.chars() {
        match c {
            // apparmor_parser's lexer ends a quoted string at `\\"` (it reads `\"` as an escaped
            // quote), so a backslash is written as its hex escape, which the pattern compiler
            // then treats as a literal backslash.
            '\\' => s.push_str("\\x5c"),
            // `@` (variable expansion, `@{HOME}`) and `#` are not pattern characters: AppArmor
            // 4.x warns "Character @ was quoted unnecessarily" for `\@` (and drops the backslash
            // after expansion has been skipped), so they are written as hex escapes, which every
            // parser from 3.0 on reads as the literal character and never expands.
            '@' => s.push_str("\\x40"),
            '#' => s.push_str("\\x23"),
            '*' | '?' | '[' | ']' | '{' | '}' | '^' | ',' | '"' => {
                s.push('\\');
                s.push(c);
            }
            _ => s.push(c),
        }
    }
    s
}

/// Escape a path that is only ever a *string* (the caller has already checked it is valid UTF-8).
pub fn escape_path(p: &Path) -> String {
    escape(&p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_every_metacharacter() {
        assert_eq!(
            escape(r#"/a*b?c[d]e{f}g^h,i"j\k@{l}#m\"#),
            r#"/a\*b\?c\[d\]e\{f\}g\^h\,i\"j\x5ck\x40\{l\}\x23m\x5c"#
        );
        assert_eq!(escape("/plain/path.qcow2"), "/plain/path.qcow2");
    }
}
