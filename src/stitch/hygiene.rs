//! Identifier hygiene rules: the blocklist (exact values, matched
//! case-insensitively after trimming, and regular expressions) per attribute
//! or global, and per-attribute value limits. No database in here.

use anyhow::{anyhow, Result};
use regex::Regex;

use super::engine::NONE;

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: i32,
    /// `None`: every attribute.
    pub attribute_id: Option<String>,
    pub value: String,
    pub is_regex: bool,
}

/// Compiled blocklist for a fixed list of attributes.
#[derive(Debug, Default)]
pub struct Blocklist {
    pub rules: Vec<Rule>,
    /// Per attribute index: (normalised exact value, rule index).
    exact: Vec<std::collections::HashMap<String, u32>>,
    /// Per attribute index: (regex, rule index).
    regex: Vec<Vec<(Regex, u32)>>,
}

/// Rule index of the built-in refusal of empty and whitespace-only values
/// (never a row of `stitching_blocklist`, always in force).
pub const EMPTY_VALUE: u32 = u32::MAX - 1;

impl Blocklist {
    pub fn new(rules: Vec<Rule>, attributes: &[String]) -> Result<Self> {
        let mut exact = vec![std::collections::HashMap::new(); attributes.len()];
        let mut regex: Vec<Vec<(Regex, u32)>> = vec![Vec::new(); attributes.len()];
        for (k, r) in rules.iter().enumerate() {
            let targets: Vec<usize> = match &r.attribute_id {
                None => (0..attributes.len()).collect(),
                Some(a) => attributes.iter().position(|x| x == a).into_iter().collect(),
            };
            if r.is_regex {
                let re = Regex::new(&r.value).map_err(|e| {
                    anyhow!(
                        "stitching_blocklist rule {} ({:?}): invalid regular expression: {e}; fix or delete the row",
                        r.id,
                        r.value
                    )
                })?;
                for t in targets {
                    regex[t].push((re.clone(), k as u32));
                }
            } else {
                for t in targets {
                    exact[t].entry(normalise(&r.value)).or_insert(k as u32);
                }
            }
        }
        Ok(Self {
            rules,
            exact,
            regex,
        })
    }

    /// The rule index blocking `value` of attribute `attr`, or [`NONE`].
    pub fn check(&self, attr: usize, value: &str) -> u32 {
        if let Some(&k) = self.exact.get(attr).and_then(|m| m.get(&normalise(value))) {
            return k;
        }
        for (re, k) in self.regex.get(attr).map(|v| v.as_slice()).unwrap_or(&[]) {
            if re.is_match(value) {
                return *k;
            }
        }
        if value.trim().is_empty() {
            return EMPTY_VALUE;
        }
        NONE
    }

    /// Human reason for a refused edge.
    pub fn reason(&self, rule: u32) -> String {
        if rule == EMPTY_VALUE {
            return "blocklist (built in): empty or whitespace-only value".to_string();
        }
        let r = &self.rules[rule as usize];
        format!(
            "blocklist rule {}: {} {:?}",
            r.id,
            if r.is_regex { "pattern" } else { "value" },
            r.value
        )
    }
}

fn normalise(v: &str) -> String {
    v.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: i32, attr: Option<&str>, v: &str, re: bool) -> Rule {
        Rule {
            id,
            attribute_id: attr.map(Into::into),
            value: v.into(),
            is_regex: re,
        }
    }

    #[test]
    fn exact_global_and_per_attribute_and_regex() {
        let attrs = vec!["email".to_string(), "cookie".to_string()];
        let b = Blocklist::new(
            vec![
                rule(1, None, "null", false),
                rule(2, Some("email"), "test@test.com", false),
                rule(3, None, r"^\s*$", true),
            ],
            &attrs,
        )
        .unwrap();
        assert_eq!(b.check(0, " NULL "), 0);
        assert_eq!(b.check(1, "null"), 0);
        assert_eq!(b.check(0, "Test@Test.com"), 1);
        assert_eq!(b.check(1, "test@test.com"), NONE);
        assert_eq!(b.check(1, "   "), 2);
        assert_eq!(b.check(0, "a@b.c"), NONE);
        assert!(b.reason(1).contains("test@test.com"));
        // blank values match the configured pattern first
        assert_eq!(b.check(0, ""), 2);
        // without any rule, blank values are still refused
        let none = Blocklist::new(vec![], &attrs).unwrap();
        assert_eq!(none.check(0, ""), EMPTY_VALUE);
        assert_eq!(none.check(1, " \t "), EMPTY_VALUE);
        assert_eq!(none.check(1, "x"), NONE);
        assert!(none.reason(EMPTY_VALUE).contains("empty"));
    }

    #[test]
    fn bad_regex_names_the_rule() {
        let e = Blocklist::new(vec![rule(9, None, "(", true)], &["a".into()]).unwrap_err();
        assert!(e.to_string().contains("rule 9"), "{e}");
    }
}
