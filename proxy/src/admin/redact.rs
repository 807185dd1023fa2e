//! Keeps private keys out of `/config_dump`, as Envoy does (`[redacted]`): the dump shows
//! the bootstrap as loaded and every SDS secret as received, and either may hold inline keys.

use serde_json::Value;

const KEY_FIELDS: [&str; 2] = ["private_key", "privateKey"];
const INLINE: [&str; 4] = ["inline_string", "inline_bytes", "inlineString", "inlineBytes"];

/// Replaces the inline content of every `private_key` data source with `[redacted]`
/// (file names stay: they are not secret).
pub fn private_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if KEY_FIELDS.contains(&k.as_str()) {
                    if let Value::Object(ds) = child {
                        for f in INLINE {
                            if let Some(x) = ds.get_mut(f) {
                                *x = Value::String("[redacted]".into());
                            }
                        }
                    }
                } else {
                    private_keys(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(private_keys),
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
    }
}
