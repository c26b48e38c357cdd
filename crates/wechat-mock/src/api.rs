//! The WeChat APIs the mock serves, by name: failures are injected and calls counted per API.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One WeChat API. Its wire name (control API, stats) is WeChat's own name for it, the last
/// segment of its path: `jscode2session`, `stable_token`, `token`, `getuserphonenumber`,
/// `checksession`.
///
/// A new API is one variant here, its arm in [`Api::name`] and its entry in [`Api::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Api {
    /// `GET /sns/jscode2session`: a login code for a session.
    Jscode2session,
    /// `POST /cgi-bin/stable_token`: the current access token (a new one with `force_refresh`).
    StableToken,
    /// `GET /cgi-bin/token`: a new access token on every call.
    Token,
    /// `POST /wxa/business/getuserphonenumber`: a phone code for the user's phone number.
    GetUserPhoneNumber,
    /// `GET /wxa/checksession`: whether a session key is the user's current one.
    CheckSession,
}

impl Api {
    /// Every API, in the order `GET /mock/stats` lists them.
    pub const ALL: [Self; 5] = [
        Self::Jscode2session,
        Self::StableToken,
        Self::Token,
        Self::GetUserPhoneNumber,
        Self::CheckSession,
    ];

    /// The wire name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Jscode2session => "jscode2session",
            Self::StableToken => "stable_token",
            Self::Token => "token",
            Self::GetUserPhoneNumber => "getuserphonenumber",
            Self::CheckSession => "checksession",
        }
    }

    /// The wire names of every API, for error messages.
    pub(crate) fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Api> for &'static str {
    fn from(api: Api) -> Self {
        api.name()
    }
}

impl TryFrom<String> for Api {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|api| api.name() == name)
            .ok_or_else(|| format!("unknown api {name:?}: use one of {}", Self::names()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for api in Api::ALL {
            assert_eq!(serde_json::to_value(api).unwrap(), json!(api.name()));
            assert_eq!(
                serde_json::from_value::<Api>(json!(api.name())).unwrap(),
                api
            );
        }
        assert_eq!(Api::Jscode2session.to_string(), "jscode2session");
        assert_eq!(Api::GetUserPhoneNumber.to_string(), "getuserphonenumber");
        let err = serde_json::from_value::<Api>(json!("Jscode2Session")).unwrap_err();
        assert!(
            err.to_string().contains(
                "use one of jscode2session, stable_token, token, getuserphonenumber, checksession"
            ),
            "{err}"
        );
        let names: std::collections::HashSet<&str> = Api::ALL.map(Api::name).into();
        assert_eq!(names.len(), Api::ALL.len(), "a wire name is used twice");
    }
}
