//! The OpenAPI document as served at `/openapi.json` and checked in as `docs/openapi.json`:
//! poem-openapi's, refined with what its derives cannot say. Each refinement writes down, as a
//! JSON Schema `pattern` or `enum`, a rule the domain already enforces (trimming, control
//! characters, lengths after trimming, the cursor's form, the apps this server serves), so a
//! client or a fuzzer reading the document knows exactly which values are accepted. The unit
//! tests hold each pattern against the domain's own parser.

use serde_json::{Value, json};

/// What `str::trim` removes (Unicode `White_Space`).
const WS: &str = r"\u0009-\u000d \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// What `char::is_control` refuses (Unicode `Cc`).
const CTRL: &str = r"\u0000-\u001f\u007f-\u009f";

/// Text of at most `max` characters once trimmed, with no control character; `optional`: an
/// empty (or all-space) value is allowed.
fn text(max: usize, optional: bool) -> String {
    let core = format!(
        "[^{WS}{CTRL}]([^{CTRL}]{{0,{}}}[^{WS}{CTRL}])?",
        max.saturating_sub(2)
    );
    if optional {
        format!("^[{WS}]*({core})?[{WS}]*$")
    } else {
        format!("^[{WS}]*{core}[{WS}]*$")
    }
}

/// `nickName`: 1–64 characters once trimmed (`NickName::parse`).
pub fn nick_name_pattern() -> String {
    text(64, false)
}

/// `country`, `province`, `city` (≤ 64) and `language` (≤ 16): may be empty (`ProfileText`).
pub fn place_pattern(max: usize) -> String {
    text(max, true)
}

/// `avatarUrl`: an `http`/`https` URL of printable ASCII, at most 1024 bytes once trimmed
/// (`AvatarUrl::parse`).
pub fn avatar_url_pattern() -> String {
    format!(
        "^[{WS}]*[hH][tT][tT][pP]([sS]://[!-.0-~][!-~]{{0,1015}}|://[!-.0-~][!-~]{{0,1016}})[{WS}]*$"
    )
}

/// The admin search's `openId`: empty counts as absent, else 1–128 printable ASCII characters
/// once trimmed (`OpenId::parse`).
pub fn open_id_query_pattern() -> String {
    format!("^[{WS}]*([!-~]{{1,128}})?[{WS}]*$")
}

/// The admin search's `q`: empty counts as absent, else 1–64 characters once trimmed, no
/// control character (`NickNameQuery::parse`).
pub fn nick_name_query_pattern() -> String {
    text(64, true)
}

/// The admin search's `cursor`: empty counts as absent, else what `encode_cursor` makes (the
/// base64url of 16 bytes: 22 characters, the last one carrying 2 bits).
pub fn cursor_pattern() -> String {
    format!("^[{WS}]*([A-Za-z0-9_-]{{21}}[AQgw])?[{WS}]*$")
}

/// Refines `spec` (poem-openapi's document) for a server serving `app_ids`.
pub fn refine(spec: &str, app_ids: &[&str]) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    if let Some(patch) = doc.pointer_mut("/components/schemas/ProfilePatchBody/properties") {
        set(patch, "nickName", "pattern", json!(nick_name_pattern()));
        set(patch, "avatarUrl", "pattern", json!(avatar_url_pattern()));
        for place in ["country", "province", "city"] {
            set(patch, place, "pattern", json!(place_pattern(64)));
        }
        set(patch, "language", "pattern", json!(place_pattern(16)));
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut() {
                let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                    continue;
                };
                for param in params {
                    refine_parameter(path, param, app_ids);
                }
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_owned())
}

fn refine_parameter(path: &str, param: &mut Value, app_ids: &[&str]) {
    let name = param.get("name").and_then(Value::as_str).unwrap_or("");
    let at = param.get("in").and_then(Value::as_str).unwrap_or("");
    let refinement = match (at, name) {
        // An empty header counts as absent (the default app); anything else must name an app
        // this server serves, else 400.
        ("header", crate::http::APP_HEADER) => {
            let mut values = vec![json!("")];
            values.extend(app_ids.iter().map(|id| json!(id)));
            ("enum", Value::Array(values))
        }
        ("path", "id") if path.starts_with("/admin/") => ("format", json!("uuid")),
        ("query", "openId") => ("pattern", json!(open_id_query_pattern())),
        ("query", "q") => ("pattern", json!(nick_name_query_pattern())),
        ("query", "cursor") => ("pattern", json!(cursor_pattern())),
        _ => return,
    };
    if let Some(schema) = param.get_mut("schema").and_then(Value::as_object_mut) {
        schema.insert(refinement.0.to_owned(), refinement.1);
    }
}

fn set(properties: &mut Value, field: &str, key: &str, value: Value) {
    if let Some(schema) = properties.get_mut(field).and_then(Value::as_object_mut) {
        schema.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wxlogin_domain::{AvatarUrl, NickName, NickNameQuery, OpenId, ProfileText};

    /// Inputs around every edge the parsers have: trimming, control characters, lengths,
    /// multi-byte characters, empty values.
    fn samples() -> Vec<String> {
        let mut s: Vec<String> = [
            "",
            " ",
            "\t",
            "a",
            " a ",
            "a b",
            "a\tb",
            "a\u{0}b",
            "\u{85}a",
            "a\u{a0}",
            "\u{7f}",
            "\u{9f}x",
            "\u{3000}字\u{3000}",
            "\u{1c}a",
            "a\u{1c}",
            "微信用户",
            "zh_CN",
            "http://a",
            "https://a",
            "HTTPS://a.b/c?d=e",
            "http:///a",
            "https://",
            "ftp://a",
            " https://a ",
            "https://a b",
            "https://字",
            "javascript:alert(1)",
            "https://a\u{0}",
            "\u{2028}http://x\u{2029}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for n in [15, 16, 17, 63, 64, 65, 127, 128, 129] {
            s.push("x".repeat(n));
            s.push(format!(" {} ", "x".repeat(n)));
            s.push("字".repeat(n));
            s.push(format!("a{}b", " ".repeat(n.saturating_sub(2))));
        }
        for n in [1015, 1016, 1017] {
            s.push(format!("https://a{}", "b".repeat(n - 1)));
            s.push(format!("http://a{}", "b".repeat(n)));
            s.push(format!("https://a{}", "字".repeat(n / 3)));
        }
        s
    }

    /// The document (`maxLength`, when given, and the pattern) and the server (poem-openapi's
    /// `max_length` validator on the raw value, then the domain's parser) agree on every sample.
    fn agree(pattern: &str, max_chars: Option<usize>, domain: impl Fn(&str) -> bool) {
        let re = regex::Regex::new(pattern).unwrap();
        for s in samples() {
            let short = max_chars.is_none_or(|m| s.chars().count() <= m);
            assert_eq!(
                re.is_match(&s) && short,
                short && domain(&s),
                "{pattern} on {s:?}"
            );
        }
    }

    #[test]
    fn each_pattern_says_exactly_what_the_domain_accepts() {
        agree(&nick_name_pattern(), Some(64), |s| {
            NickName::parse(s).is_ok()
        });
        agree(&place_pattern(64), Some(64), |s| {
            ProfileText::place("city", s).is_ok()
        });
        agree(&place_pattern(16), Some(16), |s| {
            ProfileText::language(s).is_ok()
        });
        agree(&avatar_url_pattern(), Some(1024), |s| {
            AvatarUrl::parse(s).is_ok()
        });
        let given = |s: &str| s.trim().is_empty();
        agree(&open_id_query_pattern(), None, |s| {
            given(s) || OpenId::parse(s).is_ok()
        });
        agree(&nick_name_query_pattern(), None, |s| {
            given(s) || NickNameQuery::parse(s).is_ok()
        });
    }

    #[test]
    fn the_cursor_pattern_is_what_encode_cursor_makes() {
        let re = regex::Regex::new(&cursor_pattern()).unwrap();
        for _ in 0..200 {
            let id = wxlogin_domain::UserId::from_uuid(uuid::Uuid::now_v7());
            let cursor = crate::http::admin::encode_cursor(&id);
            assert!(re.is_match(&cursor), "{cursor}");
        }
        for bad in [
            "AAAAAAAAAAAAAAAAAAAAAB",
            "AAAAAAAAAAAAAAAAAAAAA",
            "not a cursor!",
        ] {
            assert!(!re.is_match(bad), "{bad}");
            assert!(crate::http::admin::decode_cursor(bad).is_err(), "{bad}");
        }
        assert!(re.is_match("") && re.is_match("  "));
    }
}
