//! WeChat's `errcode`s, classified once for every API, and the error one call ends with.
//!
//! Matching is on `errcode` alone: `errmsg` carries a suffix that changes with every call
//! (`rid: …`, `hints: [ req_id: … ]`).

use std::fmt;

use wxlogin_domain::WeChatError;

/// What a failed call means to wxlogin. Finer than the domain's [`WeChatError`]: a
/// misconfiguration deserves its own advice, and `checksession`'s answer that a key is stale
/// is no failure at all.
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
    /// Our app id, app secret or IP whitelist is wrong: a configuration error, not the user's.
    Misconfigured,
    /// `checksession`: the signature does not match the user's current session key.
    InvalidSignature,
    /// Any other errcode, a non-JSON body, an odd HTTP status, a missing field.
    Unexpected,
}

/// Every errcode wxlogin acts on, whatever the API (WECHAT.md); any other is
/// [`Kind::Unexpected`].
const ERRCODES: &[(i64, Kind, &str)] = &[
    (40029, Kind::InvalidCode, "invalid code"),
    (40163, Kind::CodeUsed, "code already used"),
    (45011, Kind::RateLimited, "frequency limit reached"),
    (45009, Kind::RateLimited, "API quota reached"),
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
        Kind::Misconfigured,
        "WeChat rejected the app id: the configured app id or app secret is wrong (check \
         wechat.app_id / wechat.app_secret)",
    ),
    (
        40125,
        Kind::Misconfigured,
        "WeChat rejected the app secret: the configured app id or app secret is wrong \
         (check wechat.app_id / wechat.app_secret)",
    ),
    (
        40164,
        Kind::Misconfigured,
        "WeChat refused this server's IP address: add it to the IP whitelist in the \
         mini-program's development settings on mp.weixin.qq.com",
    ),
    (
        87009,
        Kind::InvalidSignature,
        "invalid signature: not the user's current session key",
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
            Kind::AccessTokenRejected => Self::AccessTokenRejected(err.detail),
            // The text names the errcode, and for a misconfiguration what to check. Only
            // `checksession` expects 87009, and turns it into an answer before this.
            Kind::Misconfigured | Kind::InvalidSignature | Kind::Unexpected => {
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
        assert_eq!(kind(45009), Kind::RateLimited);
        assert_eq!(kind(40226), Kind::RiskyUser);
        assert_eq!(kind(-1), Kind::Unavailable);
        for token in [40001, 42001, 40014] {
            assert_eq!(kind(token), Kind::AccessTokenRejected, "{token}");
        }
        for configuration in [40013, 40125, 40164] {
            assert_eq!(kind(configuration), Kind::Misconfigured, "{configuration}");
        }
        assert_eq!(kind(87009), Kind::InvalidSignature);
        for other in [0, 1, 12345, 40002, 41008, 40003, 47001, -2] {
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
        assert_eq!(domain_error(45009), WeChatError::RateLimited);
        assert_eq!(domain_error(40226), WeChatError::RiskyUser);
        assert_eq!(
            domain_error(-1),
            WeChatError::Unavailable("x: errcode -1".into())
        );
        for token in [40001, 42001, 40014] {
            assert_eq!(
                domain_error(token),
                WeChatError::AccessTokenRejected(format!("x: errcode {token}")),
            );
        }
        for unexpected in [40013, 40125, 40164, 87009, 12345] {
            assert_eq!(
                domain_error(unexpected),
                WeChatError::Unexpected(format!("x: errcode {unexpected}")),
            );
        }
    }
}
