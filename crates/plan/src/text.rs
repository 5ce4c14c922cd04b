//! The one sanitizer for text that came from outside (a node's output, a facts file, the API, a release or plan
//! file) on its way to a terminal: control characters (and the invisible bidirectional controls) are escaped, so
//! no escape sequence reaches the terminal, and long values are shortened with their length stated, so a 20 MB
//! cluster name prints as one readable line.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Values longer than this many characters are shortened to [`KEEP`] characters and their length.
pub const MAX_SHOWN: usize = 200;
/// Characters kept of a shortened value.
pub const KEEP: usize = 64;

/// Characters that must not reach a terminal verbatim: C0/C1 controls, DEL, and the format characters that reorder
/// or hide text (bidi overrides and isolates, zero-width marks).
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Lines longer than this many characters are shortened by [`terminal`].
pub const MAX_LINE: usize = 4096;

/// Whole output on its way to a terminal (what `kismatic` writes to standard output and standard error): hostile
/// characters escaped except newlines and tabs, each line longer than [`MAX_LINE`] characters shortened to
/// [`MAX_SHOWN`] characters and its length. Borrows when nothing needs changing (JSON output always).
pub fn terminal(s: &str) -> Cow<'_, str> {
    let ok = |l: &str| !l.chars().any(|c| c != '\t' && hostile(c)) && l.chars().nth(MAX_LINE).is_none();
    if s.split('\n').all(ok) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(1 << 16));
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let long = line.chars().nth(MAX_LINE).is_some();
        for c in line.chars().take(if long { MAX_SHOWN } else { MAX_LINE }) {
            if c != '\t' && hostile(c) {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        if long {
            let _ = write!(out, "… (line of {} bytes shortened)", line.len());
        }
    }
    Cow::Owned(out)
}

/// `s` for a terminal, unquoted: hostile characters escaped (`\n`, `\u{1b}`), shortened past [`MAX_SHOWN`]
/// characters as `first…` plus ` (N bytes)`. Borrows when nothing needs changing.
pub fn shown(s: &str) -> Cow<'_, str> {
    let long = s.chars().nth(MAX_SHOWN).is_some();
    if !long && !s.chars().any(hostile) {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    let keep = if long { KEEP } else { MAX_SHOWN };
    for c in s.chars().take(keep) {
        if hostile(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if long {
        let _ = write!(out, "… ({} bytes)", s.len());
    }
    Cow::Owned(out)
}

/// `s` quoted like `{:?}` (every escape `{:?}` makes, plus hostile characters), shortened past [`MAX_SHOWN`]
/// characters as `"first…" (N bytes)`.
pub fn quoted(s: &str) -> String {
    let long = s.chars().nth(MAX_SHOWN).is_some();
    let keep = if long { KEEP } else { MAX_SHOWN };
    let mut out = String::from("\"");
    for c in s.chars().take(keep) {
        if hostile(c) && !c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.extend(c.escape_debug());
        }
    }
    if long {
        let _ = write!(out, "…\" ({} bytes)", s.len());
    } else {
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_and_bidi() {
        assert_eq!(shown("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(shown("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(shown("\u{9b}2J"), "\\u{9b}2J");
        assert!(matches!(shown("plain ünïcode"), Cow::Borrowed(_)));
        assert_eq!(quoted("a\"b\u{7}"), "\"a\\\"b\\u{7}\"");
        assert_eq!(quoted("x\u{2066}"), "\"x\\u{2066}\"");
    }

    #[test]
    fn terminal_text_keeps_lines_and_escapes_the_rest() {
        assert!(matches!(terminal("a\tb\nc\n"), Cow::Borrowed(_)));
        assert_eq!(terminal("ok\n\u{1b}]0;pwned\u{7}\r\n"), "ok\n\\u{1b}]0;pwned\\u{7}\\r\n");
        let name = "c".repeat(20 << 20);
        let text = format!("Cluster: {name}\nnext\n");
        let shown = terminal(&text);
        assert_eq!(shown, format!("Cluster: {}… (line of 20971529 bytes shortened)\nnext\n", &name[..MAX_SHOWN - 9]));
    }

    #[test]
    fn shortens_with_length() {
        let long = "é".repeat(100_000);
        let s = shown(&long);
        assert_eq!(s, format!("{}… (200000 bytes)", "é".repeat(KEEP)));
        assert_eq!(quoted(&long), format!("\"{}…\" (200000 bytes)", "é".repeat(KEEP)));
        let edge = "a".repeat(MAX_SHOWN);
        assert_eq!(shown(&edge), edge);
    }
}
