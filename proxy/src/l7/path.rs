//! Request path normalization, as Envoy's HCM does it before routing and filters when
//! `normalize_path` / `merge_slashes` are set (istiod sets `normalize_path`): without it a
//! path-based RBAC DENY on `/admin` is walked around with `/x/../admin`, `/./admin` or
//! `/%61dmin`, and routes see a different path than the upstream resolves.

/// The normalized `path?query`, or `None` when nothing changes. `dots`: decode percent-encoded
/// unreserved characters, turn `\` into `/` and remove dot segments (RFC 3986 §5.2.4, Envoy's
/// `normalize_path`); `merge`: collapse runs of `/` (`merge_slashes`). The query is kept as is.
pub fn normalize(path_and_query: &str, dots: bool, merge: bool) -> Option<String> {
    if !path_and_query.starts_with('/') || !(dots || merge) {
        return None; // `*` (OPTIONS) and authority forms have no path to normalize
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut p = path.to_string();
    if dots {
        p = decode_unreserved(&p).replace('\\', "/");
        p = remove_dot_segments(&p);
    }
    if merge {
        let mut out = String::with_capacity(p.len());
        for c in p.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        p = out;
    }
    if p.is_empty() {
        p.push('/');
    }
    if p == path {
        return None;
    }
    Some(match query {
        Some(q) => format!("{p}?{q}"),
        None => p,
    })
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `%XX` of an unreserved character becomes the character; other escapes stay (an encoded
/// `/` is not a separator).
fn decode_unreserved(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let decoded = match (b.get(i), b.get(i + 1), b.get(i + 2)) {
            (Some(b'%'), Some(h), Some(l)) => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(*h), hex(*l)) {
                    (Some(h), Some(l)) => Some((h * 16 + l) as u8).filter(|c| unreserved(*c)),
                    _ => None,
                }
            }
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.extend(b.get(i).copied());
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments vanish, `..` removes the one before it
/// and never climbs above the root.
fn remove_dot_segments(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = p.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, s) in segments.iter().enumerate().skip(1) {
        match *s {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn dot_segments_escapes_and_slashes() {
        let n = |p: &str| normalize(p, true, true).unwrap_or_else(|| p.to_string());
        assert_eq!(n("/x/../admin"), "/admin");
        assert_eq!(n("/./admin"), "/admin");
        assert_eq!(n("/%61dmin?a=/../b"), "/admin?a=/../b");
        assert_eq!(n("//admin///x"), "/admin/x");
        assert_eq!(n("/../../etc"), "/etc");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a\\..\\admin"), "/admin");
        // An encoded slash is not a separator and stays encoded.
        assert_eq!(n("/a%2Fb"), "/a%2Fb");
        assert_eq!(normalize("/plain/path?q=1", true, true), None);
        // Slashes are merged only when asked.
        assert_eq!(normalize("//a", true, false), None);
    }
}
