//! Text from the daemon made safe for a terminal: process names, command lines
//! and host names are chosen by whoever runs a process or answers DNS. Shared
//! by netmonctl's tables and the TUI; JSON output never goes through here.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether a character could steer a terminal or reorder what is shown:
/// C0/C1 controls and DEL (escapes, newlines, backspace) and the bidi
/// overrides and isolates that make text read differently than it is.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control or bidi character written as a visible escape
/// (`\n`, `\u{1b}`): a name can neither run escape sequences nor fake a line.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            // escape_default gives `\n`, `\t`, `\r` and `\u{..}` for the rest.
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["curl", "", "ünïcode ✓", "a b (c)"] {
            assert!(matches!(terminal_safe(s), Cow::Borrowed(t) if t == s));
        }
    }

    #[test]
    fn controls_and_bidi_overrides_become_visible_escapes() {
        assert_eq!(terminal_safe("nmx\x1b[31mred"), "nmx\\u{1b}[31mred");
        assert_eq!(terminal_safe("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(terminal_safe("x\u{7f}\u{9b}y"), "x\\u{7f}\\u{9b}y");
        assert_eq!(terminal_safe("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert!(!terminal_safe("\x07\x08\x1b]0;title\x07")
            .chars()
            .any(char::is_control));
    }
}
