//! Request-body decoding: the strict JSON check every JSON body passes (`check_json`, with the
//! field types of the operations that take a body), the form and JSON bodies of `/onLogin` and
//! `/updateUserInfo` as the server decodes them (serde_urlencoded, as poem's `Form`; serde_json),
//! the body token the limits read, and empty optional form fields.
//!
//! Invariants (beyond no panic): a body refused for a duplicate key or a wrong type really has
//! one; a body that passes re-encodes to a body that passes and decodes to the same value; a
//! field of the wrong type is named; a decoded body re-encodes to itself (form and JSON); the
//! token the limits read from a body is the one the operation decodes; an empty optional field
//! counts as absent.
//!
//! The input: one byte choosing the operation (and form or JSON), then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wxlogin_input::{FieldTypes, JsonBodyError, body_token, check_json, present};

/// `LoginBody` of `apps/server/src/http/dto.rs`, field for field (serde's side of it).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginBody {
    code: String,
}

/// `UpdateUserInfoBody` of `apps/server/src/http/dto.rs`, field for field.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateUserInfoBody {
    encrypted_data: String,
    iv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
}

/// The JSON field types of the operations with a body, as `docs/openapi.json` declares them.
fn operations() -> [FieldTypes; 5] {
    let table = |fields: &[(&str, &str)]| -> FieldTypes {
        fields
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    };
    let s = "string";
    [
        // /onLogin, /api/v1/login
        table(&[("code", s)]),
        // /updateUserInfo
        table(&[
            ("encryptedData", s),
            ("iv", s),
            ("token", s),
            ("rawData", s),
            ("signature", s),
            ("code", s),
        ]),
        // PATCH /api/v1/me/profile
        table(&[
            ("nickName", s),
            ("avatarUrl", s),
            ("gender", "integer"),
            ("country", s),
            ("province", s),
            ("city", s),
            ("language", s),
        ]),
        // /api/v1/me/profile/encrypted
        table(&[
            ("encryptedData", s),
            ("iv", s),
            ("rawData", s),
            ("signature", s),
            ("code", s),
        ]),
        // /api/v1/me/phone
        table(&[("code", s), ("encryptedData", s), ("iv", s)]),
    ]
}

fn fits(value: &Value, ty: &str) -> bool {
    match ty {
        _ if value.is_null() => true,
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

/// `value` with every non-integer number replaced by `0.5`.
fn floats_masked(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => Value::from(0.5),
        Value::Array(items) => Value::Array(items.into_iter().map(floats_masked).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, floats_masked(v)))
                .collect(),
        ),
        other => other,
    }
}

fn json(body: &[u8], fields: &FieldTypes) {
    let checked = check_json(body, Some(fields));
    // Duplicates are refused whatever the operation.
    if let Err(dup @ JsonBodyError::DuplicateKey(_)) = check_json(body, None) {
        assert_eq!(checked, Err(dup));
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match (&checked, &parsed) {
        (Err(JsonBodyError::DuplicateKey(key)), _) => {
            assert!(key.chars().count() <= 64 && !key.contains('`'));
        }
        (Err(JsonBodyError::WrongType { field, expected }), Some(value)) => {
            let got = &value[field.as_str()];
            assert_eq!(fields.get(field), Some(expected));
            assert!(!fits(got, expected), "{field} refused though it fits");
        }
        (Err(err), None) => panic!("{err} for broken JSON"),
        (Ok(()), Some(value)) => {
            if let Some(object) = value.as_object() {
                for (name, ty) in fields {
                    if let Some(got) = object.get(name) {
                        assert!(fits(got, ty), "{name} of the wrong type passed");
                    }
                }
            }
            // No duplicate, so serde_json kept every key: the re-encoding says the same.
            // (Floats compare by kind only: serde_json without `float_roundtrip` parses some
            // long decimals one bit off, and no field of ours is a float.)
            let again = serde_json::to_vec(value).expect("a Value encodes");
            assert_eq!(check_json(&again, Some(fields)), Ok(()));
            let reparsed: Value = serde_json::from_slice(&again).expect("re-encoded JSON parses");
            assert_eq!(floats_masked(reparsed), floats_masked(value.clone()));
        }
        (Ok(()), None) => {}
    }
    if checked.is_err() {
        return;
    }
    // poem-openapi's `Json` reads a `Value` first, then the object from it (so a body with
    // invalid UTF-8 in an unknown field is refused, as `serde_json::from_slice` into a struct,
    // which skips unknown strings unchecked, would not).
    let Some(value) = parsed else {
        return;
    };
    if let Ok(update) = serde_json::from_value::<UpdateUserInfoBody>(value.clone()) {
        assert_eq!(body_token(Some("application/json"), body), update.token);
        let again = serde_json::to_vec(&update).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<UpdateUserInfoBody>(&again).ok(),
            Some(update)
        );
    }
    if let Ok(login) = serde_json::from_value::<LoginBody>(value) {
        let again = serde_json::to_vec(&login).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<LoginBody>(&again).ok(),
            Some(login)
        );
    }
}

fn form(body: &[u8]) {
    if let Ok(update) = serde_urlencoded::from_bytes::<UpdateUserInfoBody>(body) {
        // The limits read the first `token` field; serde refuses a second one.
        assert_eq!(
            body_token(None, body),
            update.token,
            "limits and handler disagree"
        );
        for field in [
            &update.raw_data,
            &update.signature,
            &update.code,
            &update.token,
        ] {
            assert_eq!(
                present(field.clone()).is_none(),
                field.as_deref().is_none_or(str::is_empty)
            );
        }
        let again = serde_urlencoded::to_string(&update).expect("encodes");
        assert_eq!(
            serde_urlencoded::from_str::<UpdateUserInfoBody>(&again).ok(),
            Some(update),
            "{again}"
        );
    }
    if let Ok(login) = serde_urlencoded::from_bytes::<LoginBody>(body) {
        let again = serde_urlencoded::to_string(&login).expect("encodes");
        assert_eq!(
            serde_urlencoded::from_str::<LoginBody>(&again).ok(),
            Some(login)
        );
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&choice, body)) = bytes.split_first() else {
        return;
    };
    let operations = operations();
    let fields = &operations[usize::from(choice) % operations.len()];
    if choice & 0x80 == 0 {
        json(body, fields);
    } else {
        form(body);
    }
});
