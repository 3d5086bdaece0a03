//! A strict reader of the Prometheus / OpenMetrics text exposition, for tests:
//! every line is a comment or `name{labels} value`, and the text ends with
//! `# EOF`; anything else is an error naming the line.

use std::collections::BTreeMap;

/// One sample: name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// Every sample of `text` in order, or the first offending line.
pub fn exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    let mut eof = false;
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if eof {
            return Err(bad("content after # EOF"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let kw = rest.split(' ').next().unwrap_or_default();
            if !matches!(kw, "HELP" | "TYPE" | "UNIT") {
                return Err(bad("unknown comment"));
            }
            // OpenMetrics: a quote in HELP text must be escaped; we write none.
            if kw == "HELP" && rest.contains('"') {
                return Err(bad("unescaped quote in HELP"));
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let consumed;
            loop {
                if let Some((i, '}')) = chars.peek().copied() {
                    consumed = i + 1;
                    break;
                }
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        return Err(bad("bad label name"));
                    }
                    key.push(c);
                }
                if chars.next().map(|x| x.1) != Some('"') {
                    return Err(bad("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|x| x.1) {
                        Some('\\') => match chars.next().map(|x| x.1) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(bad("bad escape")),
                        },
                        Some('"') => break,
                        Some('\n') | None => return Err(bad("unterminated label value")),
                        Some(c) => value.push(c),
                    }
                }
                if key.is_empty() || labels.insert(key, value).is_some() {
                    return Err(bad("empty or repeated label"));
                }
                match chars.peek().copied() {
                    Some((_, ',')) => {
                        chars.next();
                    }
                    Some((_, '}')) => {}
                    _ => return Err(bad("expected , or }")),
                }
            }
            rest = &r[consumed..];
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| bad("no space before value"))?;
        if value.contains(' ') {
            return Err(bad("unexpected timestamp or text after value"));
        }
        let v: f64 = value.parse().map_err(|_| bad("value is not a number"))?;
        out.push((name.to_owned(), labels, v));
    }
    if !eof {
        return Err("no # EOF".into());
    }
    Ok(out)
}
