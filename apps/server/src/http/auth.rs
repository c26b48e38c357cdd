//! How a request carries its token: the bearer security scheme of the `/api/v1` operations,
//! and the classic `/updateUserInfo`, which also takes it as a body field.

use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

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
/// any case, as RFC 9110 says and as the `/api/v1` security scheme reads it).
pub fn pick_token(body: Option<String>, header: Option<&str>) -> Option<String> {
    body.filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_owned())
        .or_else(|| header.and_then(bearer).map(str::to_owned))
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::pick_token;

    #[test]
    fn token_from_body_wins_then_bearer() {
        assert_eq!(
            pick_token(Some(" wxl_a ".into()), Some("Bearer wxl_b")).as_deref(),
            Some("wxl_a")
        );
        assert_eq!(
            pick_token(Some("".into()), Some("Bearer wxl_b")).as_deref(),
            Some("wxl_b")
        );
        assert_eq!(pick_token(None, Some("Basic abc")), None);
        assert_eq!(
            pick_token(None, Some("bearer wxl_c")).as_deref(),
            Some("wxl_c")
        );
        assert_eq!(
            pick_token(None, Some("BEARER  wxl_d ")).as_deref(),
            Some("wxl_d")
        );
        assert_eq!(pick_token(None, Some("Bearer ")), None);
        assert_eq!(pick_token(None, None), None);
    }
}
