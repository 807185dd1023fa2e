//! String matching as Envoy's `StringMatcher` and header presence define it: one leaf type that
//! the router (headers, query parameters) and TLS (subject alt names) both use, so neither
//! depends on the other.

/// Tests on a string value.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Present at all.
    Present(bool),
    /// Exact equality.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Contains.
    Contains(String),
    /// Whole-value regex.
    Regex(regex::Regex),
    /// Case-insensitive variants of the string tests.
    IgnoreCase(Box<ValueMatch>),
}

impl ValueMatch {
    /// Whether `value` (absent: `None`) passes the test; the case-insensitive variants compare
    /// the lower-cased value with their lower-cased pattern.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (ValueMatch::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (ValueMatch::Exact(e), Some(v)) => v == e,
            (ValueMatch::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (ValueMatch::Suffix(s), Some(v)) => v.ends_with(s.as_str()),
            (ValueMatch::Contains(s), Some(v)) => v.contains(s.as_str()),
            (ValueMatch::Regex(re), Some(v)) => re.is_match(v),
            (ValueMatch::IgnoreCase(inner), Some(v)) => inner.matches(Some(&v.to_lowercase())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ValueMatch;

    #[test]
    fn string_tests_as_envoy() {
        let m = |t: ValueMatch, v: Option<&str>| t.matches(v);
        assert!(m(ValueMatch::Present(true), Some("")) && !m(ValueMatch::Present(true), None));
        assert!(m(ValueMatch::Present(false), None));
        assert!(m(ValueMatch::Exact("a".into()), Some("a")) && !m(ValueMatch::Exact("a".into()), None));
        assert!(m(ValueMatch::Prefix("sp".into()), Some("spiffe")));
        assert!(m(ValueMatch::Suffix(".shop".into()), Some("a.shop")));
        assert!(m(ValueMatch::Contains("/sa/".into()), Some("ns/x/sa/y")));
        assert!(m(ValueMatch::Regex(regex::Regex::new("^a+$").unwrap()), Some("aaa")));
        assert!(m(ValueMatch::IgnoreCase(Box::new(ValueMatch::Exact("abc".into()))), Some("ABC")));
    }
}
