//! The pure decoding of request input: bytes or header text in, a typed value or an error that
//! names the field out.
//!
//! - [`check_json`]: a JSON body with a duplicate key, or a top-level field whose JSON type is
//!   not its schema's, is refused naming the key or field.
//! - [`bearer`], [`pick_token`], [`body_token`]: where a request carries its token
//!   (`Authorization: Bearer`, the scheme word in any case; or `/updateUserInfo`'s body field).
//! - [`present`]: an empty optional form field counts as absent.
//!
//! The HTTP server calls these; the fuzz targets (`tests/fuzz`) call them without building
//! poem, sqlx or reqwest. Must never depend on an HTTP framework, a runtime or IO.

mod json;
mod token;

pub use json::{FieldTypes, JsonBodyError, check_json};
pub use token::{TokenConflict, bearer, body_token, pick_token};

/// An optional field as the operation sees it: an empty value (`rawData=&signature=`, as form
/// encoders send unset values) counts as absent.
pub fn present(field: Option<String>) -> Option<String> {
    field.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::present;

    #[test]
    fn an_empty_field_is_absent() {
        assert_eq!(present(Some(String::new())), None);
        assert_eq!(present(None), None);
        assert_eq!(present(Some(" ".into())).as_deref(), Some(" "));
        assert_eq!(present(Some("x".into())).as_deref(), Some("x"));
    }
}
