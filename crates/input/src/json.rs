//! Strict JSON bodies: no duplicate key at any depth, top-level fields of their schema's type.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Field name → JSON type (`string`, `integer`, `number`, `boolean`, `array`, `object`) of a
/// JSON body's top-level fields, as the OpenAPI document declares them.
pub type FieldTypes = BTreeMap<String, String>;

/// Why a JSON body is refused. The message names the key or field, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonBodyError {
    /// The key (its first 64 characters, up to a backtick) appears twice in one object.
    DuplicateKey(String),
    /// A top-level field's value is not of the JSON type its schema declares.
    WrongType { field: String, expected: String },
}

impl fmt::Display for JsonBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateKey(key) => write!(f, "duplicate key `{key}` in the JSON body"),
            Self::WrongType { field, expected } => {
                let article = if expected == "integer" { "an" } else { "a" };
                write!(f, "field `{field}` must be {article} {expected}")
            }
        }
    }
}

impl std::error::Error for JsonBodyError {}

/// Checks a JSON body: a duplicate key at any depth, or (with `fields`) a top-level field whose
/// value is not of its declared type, is an error. A `null` fits any type (absent, or required:
/// the operation's own parser says which). Broken JSON and a body that is not an object pass:
/// the operation's own parser answers them.
///
/// # Errors
/// [`JsonBodyError`], naming the key or field.
pub fn check_json(body: &[u8], fields: Option<&FieldTypes>) -> Result<(), JsonBodyError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = match Unique
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
    {
        Ok(value) => value,
        Err(e) => {
            let text = e.to_string();
            return match text.strip_prefix(DUPLICATE) {
                Some(rest) => Err(JsonBodyError::DuplicateKey(
                    rest.split('`').next().unwrap_or_default().to_owned(),
                )),
                None => Ok(()),
            };
        }
    };
    let (Some(fields), Some(object)) = (fields, value.as_object()) else {
        return Ok(());
    };
    for (name, value) in object {
        let Some(expected) = fields.get(name) else {
            continue;
        };
        let fits = match expected.as_str() {
            _ if value.is_null() => true,
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        if !fits {
            return Err(JsonBodyError::WrongType {
                field: name.clone(),
                expected: expected.clone(),
            });
        }
    }
    Ok(())
}

const DUPLICATE: &str = "duplicate key `";

/// Deserializes any JSON value, refusing an object with a key twice (at any depth).
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Unique)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                // The key is the client's own text, but only its first 64 characters.
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format_args!("{DUPLICATE}{shown}`")));
            }
            let value = map.next_value_seed(Unique)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> FieldTypes {
        list.iter()
            .map(|(n, t)| ((*n).into(), (*t).into()))
            .collect()
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(
            check_json(br#"{"code":"a","code":"b"}"#, None),
            Err(JsonBodyError::DuplicateKey("code".into()))
        );
        assert_eq!(
            check_json(br#"{"a":[{"x":1,"x":2}]}"#, None),
            Err(JsonBodyError::DuplicateKey("x".into()))
        );
        assert!(check_json(br#"{"a":{"x":1},"b":{"x":2}}"#, None).is_ok());
        assert!(check_json(b"{", None).is_ok());
        assert!(check_json(b"[1,2]", None).is_ok());
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field() {
        let login = fields(&[("code", "string")]);
        let err = check_json(br#"{"code":12345}"#, Some(&login)).unwrap_err();
        assert_eq!(err.to_string(), "field `code` must be a string");
        assert!(check_json(br#"{"code":null}"#, Some(&login)).is_ok());
        let profile = fields(&[("gender", "integer")]);
        let err = check_json(br#"{"gender":1.5}"#, Some(&profile)).unwrap_err();
        assert_eq!(err.to_string(), "field `gender` must be an integer");
    }

    #[test]
    fn a_duplicate_key_shows_at_most_64_characters() {
        let key = "k".repeat(100);
        let body = format!(r#"{{"{key}":1,"{key}":2}}"#);
        assert_eq!(
            check_json(body.as_bytes(), None),
            Err(JsonBodyError::DuplicateKey("k".repeat(64)))
        );
    }
}
