//! Writing results: aligned text tables, JSON documents and CSV fields.
//! Every writer returns io errors so that main can treat a closed pipe as success.
//! Names come from whoever runs a process or answers DNS: table cells are made
//! terminal-safe and CSV cells cannot start a spreadsheet formula; JSON is exact.

use std::io::{self, Write};

use std::borrow::Cow;

use netmon_proto::text::terminal_safe;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A text table: headers, then rows padded to the widest cell of each column.
pub struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&'static str, Align)]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; control characters in a cell are shown as escapes.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| match terminal_safe(&c) {
                    Cow::Borrowed(_) => c,
                    Cow::Owned(safe) => safe,
                })
                .collect(),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|(h, _)| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, ((_, align), cell)) in self.headers.iter().zip(row).enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let last = i + 1 == self.headers.len();
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        if !last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Pretty JSON for one-shot commands: one document, newline-terminated.
pub fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) -> crate::error::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// One compact JSON line (for `watch`).
pub fn write_json_line<T: Serialize>(out: &mut dyn Write, value: &T) -> crate::error::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// An RFC 4180 field: quoted when it holds a comma, quote, CR or LF, with
/// quotes doubled. A cell a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`, as OWASP advises; no
/// field we write is a negative number.
pub fn csv_field(s: &str) -> Cow<'_, str> {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s: Cow<'_, str> = if formula {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    };
    if formula || s.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        s
    }
}

/// One CSV record, CRLF-terminated as RFC 4180 says.
pub fn write_csv_record<'a>(
    out: &mut dyn Write,
    fields: impl IntoIterator<Item = &'a str>,
) -> io::Result<()> {
    let mut first = true;
    for f in fields {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        out.write_all(csv_field(f).as_bytes())?;
    }
    out.write_all(b"\r\n")
}

/// Shortens a cell for a human table (cmdlines can be kilobytes long).
pub fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\r", "\"cr\r\""),
            ("ünïcode", "ünïcode"),
        ];
        for (input, want) in cases {
            assert_eq!(csv_field(input), want, "{input:?}");
        }
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        let cases = [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1+cmd", "\"'+1+cmd\""),
            ("-2", "\"'-2\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\t=1", "\"'\t=1\""),
            ("a=b", "a=b"),
        ];
        for (input, want) in cases {
            assert_eq!(csv_field(input), want, "{input:?}");
        }
    }

    #[test]
    fn table_cells_show_control_characters_as_escapes() {
        let mut t = Table::new(&[("PROCESS", Align::Left), ("HOST", Align::Left)]);
        t.row(vec![
            "nmx\x1b[2J\x1b]0;owned\x07".into(),
            "evil.example\nfake line".into(),
        ]);
        let mut buf = Vec::new();
        t.write_to(&mut buf).expect("writes");
        let text = String::from_utf8(buf).expect("utf8");
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert_eq!(text.lines().count(), 2, "one header, one row: {text:?}");
        assert!(text.contains("nmx\\u{1b}[2J"), "{text:?}");
        assert!(text.contains("evil.example\\nfake line"), "{text:?}");
    }

    #[test]
    fn csv_record_is_crlf_terminated() {
        let mut buf = Vec::new();
        write_csv_record(&mut buf, ["a", "b,c", ""]).expect("writes");
        assert_eq!(buf, b"a,\"b,c\",\r\n");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&[
            ("PID", Align::Right),
            ("PROCESS", Align::Left),
            ("UP", Align::Right),
        ]);
        t.row(vec!["1".into(), "systemd".into(), "0 B/s".into()]);
        t.row(vec!["4242".into(), "curl".into(), "1.5 MiB/s".into()]);
        let mut buf = Vec::new();
        t.write_to(&mut buf).expect("writes");
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(
            text,
            " PID  PROCESS         UP\n   1  systemd      0 B/s\n4242  curl     1.5 MiB/s\n"
        );
    }

    #[test]
    fn ellipsize_keeps_short_text() {
        assert_eq!(ellipsize("abc", 5), "abc");
        assert_eq!(ellipsize("abcdef", 4), "abc…");
    }
}
