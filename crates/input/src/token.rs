//! Where a request carries its bearer token.

use std::fmt;

/// A body token and a *different* bearer token in one request: which did the client mean?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenConflict;

impl TokenConflict {
    /// What the answer says (the field is `token`).
    pub const MESSAGE: &'static str =
        "the body's token and the Authorization header's differ: send one";
}

impl fmt::Display for TokenConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for TokenConflict {}

/// The token of an `Authorization: Bearer <token>` header value: the scheme word in any case
/// (RFC 9110), surrounding whitespace trimmed. `None` for another scheme or an empty token.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Takes the token from the body, or else from the `Authorization` header (see [`bearer`]).
/// An empty or blank body field counts as absent.
///
/// # Errors
/// [`TokenConflict`] when the body and the header carry different tokens.
pub fn pick_token(
    body: Option<String>,
    header: Option<&str>,
) -> Result<Option<String>, TokenConflict> {
    let body = body.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let header = header.and_then(bearer);
    match (body, header) {
        (Some(body), Some(header)) if body != header => Err(TokenConflict),
        (Some(body), _) => Ok(Some(body)),
        (None, header) => Ok(header.map(str::to_owned)),
    }
}

/// The `token` field of a body, as JSON (a content type naming `json`) or else as a form (its
/// first `token` field). `None` when absent, not a string, or the JSON is broken.
pub fn body_token(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let json = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    if json {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        value.get("token")?.as_str().map(str::to_owned)
    } else {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_word_in_any_case() {
        assert_eq!(bearer("Bearer wxl_a"), Some("wxl_a"));
        assert_eq!(bearer("bEaReR  wxl_a "), Some("wxl_a"));
        assert_eq!(bearer("Basic wxl_a"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerwxl_a"), None);
    }

    #[test]
    fn conflicting_tokens() {
        assert_eq!(
            pick_token(Some("wxl_a".into()), Some("bearer wxl_b")),
            Err(TokenConflict)
        );
        assert_eq!(
            pick_token(Some(" wxl_a".into()), Some("bearer wxl_a")),
            Ok(Some("wxl_a".into()))
        );
        assert_eq!(pick_token(Some(" ".into()), None), Ok(None));
    }

    #[test]
    fn the_body_token_of_a_form_or_json() {
        let json = Some("application/json; charset=utf-8");
        assert_eq!(
            body_token(json, br#"{"token":"wxl_a"}"#).as_deref(),
            Some("wxl_a")
        );
        assert_eq!(body_token(json, br#"{"token":1}"#), None);
        assert_eq!(body_token(json, b"{"), None);
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            body_token(form, b"iv=x&token=wxl_%61+b&token=2").as_deref(),
            Some("wxl_a b")
        );
        assert_eq!(body_token(None, b"iv=x").as_deref(), None);
    }
}
