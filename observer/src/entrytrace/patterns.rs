//! Shell patterns (`*`, `?`, `[...]`, `\` escapes): what `case`, `[[ == ]]` and `${x#pattern}`
//! and friends match, in one pass over the text for all its prefixes at once.

/// Whether unquoted text would undergo pathname expansion (`*`, `?`, `[...]`).
pub(super) fn has_glob(text: &str) -> bool {
    text.contains(['*', '?']) || text.find('[').is_some_and(|i| text[i..].contains(']'))
}

/// One element of a shell pattern.
enum Elem {
    Star,
    Any,
    Char(char),
    /// `[...]`: ranges (a single character `c` is `(c, c)`), negated by `!` or `^`.
    Class {
        ranges: Vec<(char, char)>,
        negate: bool,
    },
}

impl Elem {
    fn matches(&self, c: char) -> bool {
        match self {
            Elem::Star | Elem::Any => true,
            Elem::Char(x) => *x == c,
            Elem::Class { ranges, negate } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negate
            }
        }
    }
}

/// A shell pattern (`case`, `${x#p}`, `[[ x == p ]]`): `*`, `?`, `[...]`, `\x`.
fn compile(pattern: &str) -> Vec<Elem> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let (elem, next) = match p[i] {
            '*' => (Elem::Star, i + 1),
            '?' => (Elem::Any, i + 1),
            '\\' if i + 1 < p.len() => (Elem::Char(p[i + 1]), i + 2),
            '[' => class(&p, i).unwrap_or((Elem::Char('['), i + 1)),
            c => (Elem::Char(c), i + 1),
        };
        out.push(elem);
        i = next;
    }
    out
}

/// A `[...]` at `start` and the index after it; `None` when it is not closed (then `[` is
/// literal).
fn class(p: &[char], start: usize) -> Option<(Elem, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((Elem::Class { ranges, negate }, i + 1));
        }
        first = false;
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        match (p.get(i + 1), p.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((lo, hi));
                i += 3;
            }
            _ => {
                ranges.push((lo, lo));
                i += 1;
            }
        }
    }
}

/// For each prefix of `text` (lengths 0 to n), whether `pattern` matches it: one pass of the
/// pattern's NFA over the text, O(n·m) for all prefixes together (trying every prefix with a
/// backtracking matcher would be O(n²·m), which a script could make expensive).
fn prefix_matches(pattern: &[Elem], text: &[char]) -> Vec<bool> {
    let k = pattern.len();
    // A `*` may match nothing: reaching it reaches what follows.
    let close = |set: &mut [bool]| {
        for s in 0..k {
            if set[s] && matches!(pattern[s], Elem::Star) {
                set[s + 1] = true;
            }
        }
    };
    let mut cur = vec![false; k + 1];
    cur[0] = true;
    close(&mut cur);
    let mut out = Vec::with_capacity(text.len() + 1);
    out.push(cur[k]);
    for &c in text {
        let mut next = vec![false; k + 1];
        for s in 0..k {
            if cur[s] && pattern[s].matches(c) {
                // `*` consumes and stays; anything else moves on.
                let to = if matches!(pattern[s], Elem::Star) {
                    s
                } else {
                    s + 1
                };
                next[to] = true;
            }
        }
        close(&mut next);
        if !next.contains(&true) {
            break;
        }
        out.push(next[k]);
        cur = next;
    }
    out.resize(text.len() + 1, false);
    out
}

pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    prefix_matches(&compile(pattern), &text)[text.len()]
}

pub(super) fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "*?[]\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `${x#p}`, `${x##p}` (`prefix`) and `${x%p}`, `${x%%p}`.
pub(super) fn strip(value: &str, pattern: &str, longest: bool, prefix: bool) -> String {
    let mut pattern = compile(pattern);
    let mut chars: Vec<char> = value.chars().collect();
    // A suffix is a prefix of the reversed text, for the reversed pattern.
    if !prefix {
        pattern.reverse();
        chars.reverse();
    }
    let matches = prefix_matches(&pattern, &chars);
    let mut lengths = (0..=chars.len()).filter(|&n| matches[n]);
    let cut = if longest {
        lengths.next_back()
    } else {
        lengths.next()
    };
    let Some(cut) = cut else {
        return value.to_string();
    };
    let mut kept: Vec<char> = chars.split_off(cut);
    if !prefix {
        kept.reverse();
    }
    kept.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*.sh", "a.sh"));
        assert!(!glob_match("*.sh", "a.shx"));
        assert!(glob_match("-*", "-v"));
        assert!(glob_match("[!0-9]*", "x1"));
        assert!(!glob_match("[!0-9]*", "1x"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match(r"\*", "*"));
        assert!(!glob_match(r"\*", "x"));
        assert!(glob_match("[", "["));
        assert!(glob_match("*", ""));
        assert_eq!(strip("a/b/c", "*/", false, true), "b/c");
        assert_eq!(strip("a/b/c", "*/", true, true), "c");
        assert_eq!(strip("a/b/c", "/*", false, false), "a/b");
        assert_eq!(strip("a/b/c", "/*", true, false), "a");
        assert_eq!(strip("a/b/c", "x*", true, false), "a/b/c");
        assert_eq!(strip("-x.conf", "-", false, true), "x.conf");
        assert_eq!(strip("x[1]", r"\[*", false, false), "x");
        assert!(glob_match("*a*b*c", "xaybzc"));
        assert!(!glob_match("*a*b*c", "xaybz"));
        assert!(glob_match("[a-c][!a-c]", "bz"));
        assert!(!glob_match("[a-c][!a-c]", "bb"));
        assert!(glob_match("[]x]", "]"));
        assert!(glob_match(r"[\]]", "]"));
        // Linear in the text for all prefixes at once: a long value is cheap.
        let long = "a".repeat(4000) + "b";
        assert_eq!(strip(&long, "*a", true, true), "b");
        assert!(!glob_match(&"*a".repeat(50), &"a".repeat(49)));
    }
}
