//! How a request carries its token: the bearer security scheme of the `/api/v1` operations,
//! and the classic `/updateUserInfo`, which also takes it as a body field.

use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use wxlogin_domain::{InvalidValue, Reason};

/// The token from `/onLogin` or `/api/v1/login`, as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct BearerToken(pub Bearer);

impl BearerToken {
    pub fn token(&self) -> &str {
        &self.0.token
    }
}

/// Takes the token from the body, or else from `Authorization: Bearer …` (the scheme word in
/// any case, as RFC 9110 says and as the `/api/v1` security scheme reads it). An empty body
/// field counts as absent; a body token and a *different* bearer token is a conflict (which of
/// them did the client mean?), refused as `invalid_request`.
pub fn pick_token(
    body: Option<String>,
    header: Option<&str>,
) -> Result<Option<String>, InvalidValue> {
    wxlogin_input::pick_token(body, header)
        .map_err(|_| InvalidValue::new("token", Reason::TokenConflict))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::pick_token;

    #[test]
    fn token_from_body_or_bearer_in_any_case() {
        let pick = |body: Option<&str>, header| pick_token(body.map(str::to_owned), header);
        assert_eq!(
            pick(Some(" wxl_a "), Some("Bearer wxl_a"))
                .unwrap()
                .as_deref(),
            Some("wxl_a")
        );
        assert_eq!(
            pick(Some(" wxl_a "), None).unwrap().as_deref(),
            Some("wxl_a")
        );
        assert_eq!(
            pick(Some(""), Some("Bearer wxl_b")).unwrap().as_deref(),
            Some("wxl_b")
        );
        assert_eq!(pick(None, Some("Basic abc")).unwrap(), None);
        assert_eq!(
            pick(None, Some("bearer wxl_c")).unwrap().as_deref(),
            Some("wxl_c")
        );
        assert_eq!(
            pick(None, Some("BEARER  wxl_d ")).unwrap().as_deref(),
            Some("wxl_d")
        );
        assert_eq!(pick(None, Some("Bearer ")).unwrap(), None);
        assert_eq!(pick(None, None).unwrap(), None);
    }

    #[test]
    fn a_body_token_and_a_different_header_token_conflict() {
        let err = pick_token(Some("wxl_a".into()), Some("bearer wxl_b")).unwrap_err();
        assert_eq!(err.field, "token");
        // A non-bearer header names no token: no conflict.
        assert!(pick_token(Some("wxl_a".into()), Some("Basic abc")).is_ok());
    }
}
