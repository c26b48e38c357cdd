//! WeChat's `errcode`s, classified once for every API, and the error one call ends with.
//!
//! Matching is on `errcode` alone: `errmsg` carries a suffix that changes with every call
//! (`rid: …`, `hints: [ req_id: … ]`).

use std::fmt;

use wxlogin_domain::WeChatError;

/// What a failed call means to wxlogin. Finer than the domain's [`WeChatError`]: the
/// access-token cache must tell a rejected token (refetch it once) from other failures, and
/// rejected credentials deserve their own alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    InvalidCode,
    CodeUsed,
    RateLimited,
    RiskyUser,
    /// Busy (-1), HTTP 5xx, timeouts, refused or dropped connections: worth trying later.
    Unavailable,
    /// The access token is not the latest, has expired, or is malformed.
    AccessTokenRejected,
    /// Our app id or app secret is wrong: a configuration error, not the user's.
    CredentialsRejected,
    /// Any other errcode, a non-JSON body, an odd HTTP status, a missing field.
    Unexpected,
}

/// Every errcode wxlogin acts on, whatever the API (WECHAT.md); any other is
/// [`Kind::Unexpected`].
const ERRCODES: &[(i64, Kind, &str)] = &[
    (40029, Kind::InvalidCode, "invalid code"),
    (40163, Kind::CodeUsed, "code already used"),
    (45011, Kind::RateLimited, "frequency limit reached"),
    (40226, Kind::RiskyUser, "high-risk user"),
    (-1, Kind::Unavailable, "WeChat is busy"),
    (
        40001,
        Kind::AccessTokenRejected,
        "access token invalid or not the latest",
    ),
    (42001, Kind::AccessTokenRejected, "access token expired"),
    (40014, Kind::AccessTokenRejected, "access token malformed"),
    (
        40013,
        Kind::CredentialsRejected,
        "WeChat rejected the app id: the configured app id or app secret is wrong (check \
         wechat.app_id / wechat.app_secret)",
    ),
    (
        40125,
        Kind::CredentialsRejected,
        "WeChat rejected the app secret: the configured app id or app secret is wrong \
         (check wechat.app_id / wechat.app_secret)",
    ),
];

/// The kind of a non-zero `errcode`, and what it means in words (for error texts).
pub(crate) fn classify(errcode: i64) -> (Kind, &'static str) {
    ERRCODES.iter().find(|(code, ..)| *code == errcode).map_or(
        (Kind::Unexpected, "unknown errcode"),
        |&(_, kind, meaning)| (kind, meaning),
    )
}

/// How one call failed: its kind, WeChat's `errcode` if it answered one, and a text fit for
/// a log line (the API's name first, every secret of the call scrubbed, length bounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    pub(crate) kind: Kind,
    pub(crate) errcode: Option<i64>,
    pub(crate) detail: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl From<CallError> for WeChatError {
    fn from(err: CallError) -> Self {
        match err.kind {
            Kind::InvalidCode => Self::InvalidCode,
            Kind::CodeUsed => Self::CodeUsed,
            Kind::RateLimited => Self::RateLimited,
            Kind::RiskyUser => Self::RiskyUser,
            Kind::Unavailable => Self::Unavailable(err.detail),
            // The domain has no variant of its own for these yet; the text names the errcode.
            Kind::AccessTokenRejected | Kind::CredentialsRejected | Kind::Unexpected => {
                Self::Unexpected(err.detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn domain_error(errcode: i64) -> WeChatError {
        CallError {
            kind: classify(errcode).0,
            errcode: Some(errcode),
            detail: format!("x: errcode {errcode}"),
        }
        .into()
    }

    #[test]
    fn the_table_classifies_every_documented_errcode() {
        let kind = |errcode| classify(errcode).0;
        assert_eq!(kind(40029), Kind::InvalidCode);
        assert_eq!(kind(40163), Kind::CodeUsed);
        assert_eq!(kind(45011), Kind::RateLimited);
        assert_eq!(kind(40226), Kind::RiskyUser);
        assert_eq!(kind(-1), Kind::Unavailable);
        for token in [40001, 42001, 40014] {
            assert_eq!(kind(token), Kind::AccessTokenRejected, "{token}");
        }
        for credentials in [40013, 40125] {
            assert_eq!(
                kind(credentials),
                Kind::CredentialsRejected,
                "{credentials}"
            );
        }
        for other in [0, 1, 12345, 40002, 41008, 87009, -2] {
            assert_eq!(kind(other), Kind::Unexpected, "{other}");
        }
        let codes: HashSet<i64> = ERRCODES.iter().map(|(code, ..)| *code).collect();
        assert_eq!(codes.len(), ERRCODES.len(), "an errcode is listed twice");
    }

    #[test]
    fn errcodes_map_to_domain_errors() {
        assert_eq!(domain_error(40029), WeChatError::InvalidCode);
        assert_eq!(domain_error(40163), WeChatError::CodeUsed);
        assert_eq!(domain_error(45011), WeChatError::RateLimited);
        assert_eq!(domain_error(40226), WeChatError::RiskyUser);
        assert_eq!(
            domain_error(-1),
            WeChatError::Unavailable("x: errcode -1".into())
        );
        for unexpected in [40013, 40125, 40001, 42001, 40014, 12345] {
            assert_eq!(
                domain_error(unexpected),
                WeChatError::Unexpected(format!("x: errcode {unexpected}")),
            );
        }
    }
}
