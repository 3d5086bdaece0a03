//! Host name -> category by suffix rules: the shipped default rules
//! (packaging/categories.toml, compiled in), an optional rules file and inline
//! config rules on top. Pure: the caller reads files.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

/// The default rules (packaging/categories.toml, also a template for
/// `names.categories_file`).
pub const DEFAULT_RULES: &str = include_str!("../../../packaging/categories.toml");

#[derive(Debug, thiserror::Error)]
#[error("invalid category rules in '{origin}': {message}")]
pub struct RulesError {
    pub origin: String,
    pub message: String,
}

/// A rules file: `category = ["suffix", ...]` per line.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct RulesFile(HashMap<String, Vec<String>>);

/// Suffix -> category. Later additions override earlier ones per suffix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Categories {
    by_suffix: HashMap<String, Arc<str>>,
}

fn normalise(suffix: &str) -> Option<String> {
    let s = suffix.trim().trim_start_matches("*.").trim_matches('.');
    (!s.is_empty() && !s.contains(char::is_whitespace)).then(|| s.to_ascii_lowercase())
}

impl Categories {
    /// The compiled-in default rules.
    pub fn builtin() -> Categories {
        let mut c = Categories::default();
        // The shipped file is checked by a unit test; an error here cannot
        // happen in a released binary, and would only leave categories empty.
        let _ = c.add_rules(DEFAULT_RULES, "builtin");
        c
    }

    /// Adds the rules of a rules file (`category = ["suffix", ...]`).
    pub fn add_rules(&mut self, text: &str, origin: &str) -> Result<(), RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        // Sorted, so that a suffix listed under two categories resolves the
        // same way on every run.
        let mut cats: Vec<(String, Vec<String>)> = file.0.into_iter().collect();
        cats.sort();
        for (cat, suffixes) in cats {
            for s in suffixes {
                self.add(&s, &cat).map_err(|message| RulesError {
                    origin: origin.to_owned(),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Adds one rule: names ending in `suffix` (on a label boundary) are `category`.
    pub fn add(&mut self, suffix: &str, category: &str) -> Result<(), String> {
        let s = normalise(suffix).ok_or_else(|| format!("'{suffix}' is not a domain suffix"))?;
        let cat = category.trim();
        if cat.is_empty() {
            return Err(format!("empty category for '{suffix}'"));
        }
        self.by_suffix.insert(s, Arc::from(cat));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_suffix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_suffix.is_empty()
    }

    /// The category of the longest matching suffix of `name` (lower case).
    pub fn category(&self, name: &str) -> Option<Arc<str>> {
        let name = name.trim_end_matches('.');
        let mut rest = name;
        loop {
            if let Some(c) = self.by_suffix.get(rest) {
                return Some(c.clone());
            }
            let (_, tail) = rest.split_once('.')?;
            rest = tail;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_parse_and_are_substantial() {
        let mut c = Categories::default();
        c.add_rules(DEFAULT_RULES, "shipped").unwrap();
        assert!(c.len() >= 150, "only {} rules", c.len());
        assert_eq!(Categories::builtin(), c);
    }

    #[test]
    fn default_table_of_names() {
        let c = Categories::builtin();
        let cases = [
            ("www.netflix.com", Some("streaming")),
            ("rr3---sn-abc.googlevideo.com", Some("streaming")),
            ("github.com", Some("development")),
            ("objects.githubusercontent.com", Some("development")),
            ("static.crates.io", Some("development")),
            ("s3.eu-west-1.amazonaws.com", Some("cloud")),
            ("deb.debian.org", Some("updates")),
            ("security.ubuntu.com", Some("updates")),
            ("ad.doubleclick.net", Some("ads/tracking")),
            ("web.whatsapp.com", Some("messaging")),
            ("www.facebook.com", Some("social")),
            ("example.org", None),
        ];
        for (name, want) in cases {
            assert_eq!(c.category(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn match_is_on_label_boundaries() {
        let c = Categories::builtin();
        assert_eq!(c.category("notgithub.com"), None);
        assert_eq!(c.category("github.com.evil.test"), None);
        assert_eq!(
            c.category("api.github.com.").as_deref(),
            Some("development")
        );
    }

    #[test]
    fn longest_suffix_wins_and_overrides_apply() {
        let mut c = Categories::default();
        c.add_rules("cloud = [\"example.com\"]\n", "t").unwrap();
        c.add("video.example.com", "streaming").unwrap();
        assert_eq!(
            c.category("a.video.example.com").as_deref(),
            Some("streaming")
        );
        assert_eq!(c.category("www.example.com").as_deref(), Some("cloud"));
        c.add("*.example.com", "work").unwrap();
        assert_eq!(c.category("www.example.com").as_deref(), Some("work"));
    }

    #[test]
    fn bad_rules_name_their_origin() {
        let mut c = Categories::default();
        let e = c.add_rules("cloud = \"x\"\n", "/etc/x.toml").unwrap_err();
        assert!(e.to_string().contains("/etc/x.toml"), "{e}");
        assert!(c.add(" ", "x").is_err());
        assert!(c.add("a.test", "").is_err());
    }
}
