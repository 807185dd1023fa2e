//! Keeps private keys out of `/config_dump`, as Envoy does (`[redacted]`): the dump shows
//! the bootstrap as loaded and every SDS secret as received, and either may hold inline keys.

use serde_json::Value;

/// Fields Envoy marks `sensitive`: private keys and their passwords, session ticket keys,
/// generic secrets (snake_case as in YAML, camelCase as in proto JSON).
const SENSITIVE: [&str; 10] = [
    "private_key",
    "privateKey",
    "password",
    "session_ticket_keys",
    "sessionTicketKeys",
    "generic_secret",
    "genericSecret",
    "pkcs12",
    "ocsp_staple",
    "ocspStaple",
];
const INLINE: [&str; 4] = ["inline_string", "inline_bytes", "inlineString", "inlineBytes"];

/// Replaces every inline data source under a sensitive field with `[redacted]` (file names
/// stay: they are not secret).
pub fn private_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if SENSITIVE.contains(&k.as_str()) {
                    inline_data(child);
                } else {
                    private_keys(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(private_keys),
        _ => {}
    }
}

fn inline_data(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if INLINE.contains(&k.as_str()) {
                    *child = Value::String("[redacted]".into());
                } else {
                    inline_data(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(inline_data),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn inline_keys_are_redacted_file_names_kept() {
        let mut v = json!({"a": [{"tlsCertificate": {"privateKey": {"inlineBytes": "LS0t"}, "certificateChain": {"inlineBytes": "c"}}}],
                           "b": {"private_key": {"filename": "/k.pem"}}, "c": {"private_key": {"inline_string": "-----BEGIN"}}});
        super::private_keys(&mut v);
        assert_eq!(v["a"][0]["tlsCertificate"]["privateKey"]["inlineBytes"], "[redacted]");
        assert_eq!(v["a"][0]["tlsCertificate"]["certificateChain"]["inlineBytes"], "c");
        assert_eq!(v["b"]["private_key"]["filename"], "/k.pem");
        assert_eq!(v["c"]["private_key"]["inline_string"], "[redacted]");
        let mut t = json!({"session_ticket_keys": {"keys": [{"inline_bytes": "AAAA"}]}});
        super::private_keys(&mut t);
        assert_eq!(t["session_ticket_keys"]["keys"][0]["inline_bytes"], "[redacted]");
    }
}
