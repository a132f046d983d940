//! Text from remote parties (message content, receipts, directory entries,
//! relay answers) made safe for a terminal before human output prints it:
//! control characters (C0, DEL, C1: escape sequences that move the cursor,
//! rewrite lines or hide text) and Unicode bidi controls (that reorder what
//! is displayed, e.g. `invoice\u{202E}fdp.exe` showing as `invoiceexe.pdf`)
//! are shown as visible escapes, so nothing is silently hidden. JSON output
//! needs none of this: serde escapes every control character.

use std::borrow::Cow;
use std::fmt::Write;

use crate::util::is_bidi_control;

fn unsafe_char(c: char, keep_newlines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_newlines,
        c => c.is_control() || is_bidi_control(c),
    }
}

/// `s` with every control character replaced by a visible escape (`\x1b`,
/// `\r`, `U+009B`, `U+202E`); with `keep_newlines`, `\n`, `\t` and the `\r`
/// of a `\r\n` are kept (multi-line text such as a message body).
pub(crate) fn terminal_safe(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c, keep_newlines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if keep_newlines && chars.peek() == Some(&'\n') => out.push(c),
            c if !unsafe_char(c, keep_newlines) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "U+{:04X}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// `println!` of one line whose fields may come from a remote party: the
/// whole formatted line goes through [`terminal_safe`] (the format string
/// itself is ours and has no control characters).
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::cli::term::terminal_safe(&format!($($arg)*), false))
    };
}
pub(crate) use say;

/// Appends one line of human output to `out`, terminal-safe as [`say!`] prints it.
pub(crate) fn push_line(out: &mut String, line: &str) {
    out.push_str(&terminal_safe(line, false));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible() {
        assert_eq!(terminal_safe("\x1b[8A\x1b[2KFrom: x", false), "\\x1b[8A\\x1b[2KFrom: x");
        assert_eq!(terminal_safe("a\x1b[8mb", true), "a\\x1b[8mb");
        assert_eq!(terminal_safe("bell\x07 del\x7f nul\0", false), "bell\\x07 del\\x7f nul\\x00");
        assert_eq!(terminal_safe("over\rwrite", true), "over\\rwrite");
    }

    #[test]
    fn c1_controls_become_visible() {
        // U+009B is CSI on terminals that take 8-bit controls; U+0085 is NEL.
        assert_eq!(terminal_safe("x\u{9b}2Jy\u{85}", false), "xU+009B2JyU+0085");
    }

    #[test]
    fn bidi_controls_become_visible() {
        assert_eq!(terminal_safe("invoice\u{202E}fdp.exe", false), "invoiceU+202Efdp.exe");
        for c in ['\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202D}', '\u{2066}', '\u{2069}'] {
            assert_eq!(terminal_safe(&c.to_string(), true), format!("U+{:04X}", c as u32));
        }
    }

    #[test]
    fn ordinary_text_is_kept_as_is() {
        for s in ["Zoë Ðorđević, Société Générale", "张伟 / 北京", "مصرف", "plain ASCII, €12 000", ""]
        {
            assert!(matches!(terminal_safe(s, false), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn newlines_and_tabs_kept_only_when_asked() {
        let body = "line 1\n\tindented\r\nline 3";
        assert_eq!(terminal_safe(body, true), body);
        assert_eq!(terminal_safe(body, false), "line 1\\n\\tindented\\r\\nline 3");
        assert_eq!(terminal_safe("end\r", true), "end\\r");
    }

    #[test]
    fn push_line_escapes_the_whole_line() {
        let mut out = String::new();
        push_line(&mut out, "Subject:  a\nFrom: b");
        assert_eq!(out, "Subject:  a\\nFrom: b\n");
    }
}
