//! HTTP payloads (camelCase, WeChat's own field names) and their conversion from domain types.
//! Domain types carry no serde; this is the only place that shapes JSON.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiRequest, Object, payload::Form, payload::Json};
use serde::Deserialize;
use wxlogin_domain::{
    AvatarUrl, EncryptedData, EncryptedProfile, Gender, InvalidValue, LoginCode, LoginOutcome,
    NickName, PhoneCode, PhoneRequest, Profile, ProfileStatus, ProfileText, ProfileUpdate, Reason,
    Refreshed, User,
};

/// `POST /onLogin`: the code from `wx.login`.
#[derive(Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    /// The `code` that `wx.login` returned (single use, valid for 5 minutes).
    #[oai(validator(max_length = 256))]
    pub code: String,
}

// Request bodies carry single-use codes, tokens and encrypted data: their Debug output names
// the fields and hides the values, so a stray `{:?}` cannot put them in a log.
impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("code", &"[REDACTED]")
            .finish()
    }
}

impl std::fmt::Debug for UpdateUserInfoBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |o: &Option<String>| if o.is_some() { "[REDACTED]" } else { "None" };
        f.debug_struct("UpdateUserInfoBody")
            .field("encrypted_data", &"[REDACTED]")
            .field("iv", &self.iv)
            .field("token", &shown(&self.token))
            .field("raw_data", &self.raw_data.as_ref().map(String::len))
            .field("signature", &shown(&self.signature))
            .field("code", &shown(&self.code))
            .finish()
    }
}

/// The login body, as a form (the classic client) or as JSON.
#[derive(Debug, ApiRequest)]
pub enum LoginRequest {
    Form(Form<LoginBody>),
    Json(Json<LoginBody>),
}

impl LoginRequest {
    pub fn into_inner(self) -> LoginBody {
        match self {
            Self::Form(Form(b)) | Self::Json(Json(b)) => b,
        }
    }
}

/// `POST /updateUserInfo`: `encryptedData` + `iv` from `getUserInfo`/`getUserProfile`.
#[derive(Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct UpdateUserInfoBody {
    /// The `encryptedData` (base64) WeChat gave the client.
    #[oai(validator(max_length = 32768))]
    pub encrypted_data: String,
    /// The `iv` (base64 of 16 bytes) that came with it.
    #[oai(validator(max_length = 64))]
    pub iv: String,
    /// The token from `/onLogin`; may instead come as `Authorization: Bearer <token>`.
    #[oai(validator(max_length = 256))]
    #[oai(nullable)]
    pub token: Option<String>,
    /// `rawData` from `getUserInfo`; checked against `signature` when both are present.
    #[oai(validator(max_length = 8192))]
    #[oai(nullable)]
    pub raw_data: Option<String>,
    /// `signature` = sha1(rawData + session_key), hex.
    #[oai(validator(max_length = 64))]
    #[oai(nullable)]
    pub signature: Option<String>,
    /// A fresh `wx.login` code. Send it when the session key may have rotated since login:
    /// the server exchanges it first and decrypts with the new key.
    #[oai(validator(max_length = 256))]
    #[oai(nullable)]
    pub code: Option<String>,
}

/// The update body, as a form (the classic client) or as JSON.
#[derive(Debug, ApiRequest)]
pub enum UpdateUserInfoRequest {
    Form(Form<UpdateUserInfoBody>),
    Json(Json<UpdateUserInfoBody>),
}

impl UpdateUserInfoRequest {
    pub fn into_inner(self) -> UpdateUserInfoBody {
        match self {
            Self::Form(Form(b)) | Self::Json(Json(b)) => b,
        }
    }
}

/// A user as clients see it. Unknown values are `null`.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct UserDto {
    /// wxlogin's own user id (UUID v7).
    pub id: String,
    /// The user's openid in this mini-program.
    pub open_id: String,
    /// The user's unionid, when the mini-program is bound to an Open Platform account.
    #[oai(nullable)]
    pub union_id: Option<String>,
    /// The nickname (1–64 characters). WeChat's placeholder "微信用户" is never stored over a
    /// real one.
    #[oai(nullable)]
    pub nick_name: Option<String>,
    /// The avatar URL (http or https).
    #[oai(nullable)]
    pub avatar_url: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    #[oai(nullable)]
    pub gender: Option<i64>,
    /// Country, as WeChat names it.
    #[oai(nullable)]
    pub country: Option<String>,
    /// Province, as WeChat names it.
    #[oai(nullable)]
    pub province: Option<String>,
    /// City, as WeChat names it.
    #[oai(nullable)]
    pub city: Option<String>,
    /// The client's language, e.g. `zh_CN`.
    #[oai(nullable)]
    pub language: Option<String>,
    /// The phone number, once captured.
    #[oai(nullable)]
    pub phone_number: Option<String>,
    /// When the user first logged in.
    pub created_at: DateTime<Utc>,
    /// When the user record last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        let p = &u.profile;
        let text =
            |t: &Option<wxlogin_domain::ProfileText>| t.as_ref().map(|t| t.as_str().to_owned());
        Self {
            id: u.id.to_string(),
            open_id: u.open_id.as_str().to_owned(),
            union_id: u.union_id.as_ref().map(|x| x.as_str().to_owned()),
            nick_name: p.nick_name.as_ref().map(|n| n.as_str().to_owned()),
            avatar_url: p.avatar_url.as_ref().map(|a| a.as_str().to_owned()),
            gender: p.gender.map(|g| g.code()),
            country: text(&p.country),
            province: text(&p.province),
            city: text(&p.city),
            language: text(&p.language),
            phone_number: u.phone_number.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A successful login.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct LoginReply {
    /// Always 200 (classic clients test `data.status == 200`).
    pub status: u16,
    /// The bearer token for later requests. Shown once; the server keeps only its digest.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// True when this login created the user.
    pub is_new_user: bool,
    /// False until the user has a real nickname and avatar (not WeChat's placeholders).
    pub profile_complete: bool,
    /// The signed-in user.
    pub user: UserDto,
}

impl From<LoginOutcome> for LoginReply {
    fn from(o: LoginOutcome) -> Self {
        Self {
            status: 200,
            token: o.token.expose().to_owned(),
            expires_at: o.expires_at,
            is_new_user: o.is_new_user,
            profile_complete: o.status == ProfileStatus::Complete,
            user: UserDto::from(&o.user),
        }
    }
}

/// A successful profile update.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct UserReply {
    /// Always 200.
    pub status: u16,
    /// True once the user has a real nickname and avatar.
    pub profile_complete: bool,
    /// The user as stored now.
    pub user: UserDto,
}

impl UserReply {
    pub fn new(user: &User, status: ProfileStatus) -> Self {
        Self {
            status: 200,
            profile_complete: status == ProfileStatus::Complete,
            user: UserDto::from(user),
        }
    }
}

/// `PATCH /api/v1/me/profile`: plain fields, as the avatar/nickname filling widgets give them.
/// Absent fields are left as they are.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ProfilePatchBody {
    /// From `<input type="nickname">`: 1–64 characters, trimmed, no control characters.
    /// WeChat's placeholder "微信用户" is ignored.
    #[oai(validator(max_length = 64))]
    #[oai(nullable)]
    pub nick_name: Option<String>,
    /// An `https` or `http` URL of at most 1024 characters (an uploaded avatar's URL).
    /// WeChat's grey default avatar is ignored.
    #[oai(validator(max_length = 1024))]
    #[oai(nullable)]
    pub avatar_url: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "2")))]
    pub gender: Option<i64>,
    /// At most 64 characters.
    #[oai(validator(max_length = 64))]
    #[oai(nullable)]
    pub country: Option<String>,
    /// At most 64 characters.
    #[oai(validator(max_length = 64))]
    #[oai(nullable)]
    pub province: Option<String>,
    /// At most 64 characters.
    #[oai(validator(max_length = 64))]
    #[oai(nullable)]
    pub city: Option<String>,
    /// At most 16 characters, e.g. `zh_CN`.
    #[oai(validator(max_length = 16))]
    #[oai(nullable)]
    pub language: Option<String>,
}

impl ProfilePatchBody {
    /// The validated update; the error names the first field that fails.
    pub fn into_update(self) -> Result<ProfileUpdate, InvalidValue> {
        let place = |field: &'static str, v: Option<String>| {
            v.map(|s| ProfileText::place(field, &s)).transpose()
        };
        Ok(ProfileUpdate(Profile {
            nick_name: self.nick_name.map(|s| NickName::parse(&s)).transpose()?,
            avatar_url: self.avatar_url.map(|s| AvatarUrl::parse(&s)).transpose()?,
            gender: self.gender.map(Gender::from_code).transpose()?,
            country: place("country", self.country)?,
            province: place("province", self.province)?,
            city: place("city", self.city)?,
            language: self
                .language
                .map(|s| ProfileText::language(&s))
                .transpose()?,
        }))
    }
}

/// `POST /api/v1/me/profile/encrypted`: `encryptedData` + `iv` from `getUserProfile` (the token
/// comes as `Authorization: Bearer`).
#[derive(Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct EncryptedProfileBody {
    /// The `encryptedData` (base64) WeChat gave the client.
    #[oai(validator(max_length = 32768))]
    pub encrypted_data: String,
    /// The `iv` (base64 of 16 bytes) that came with it.
    #[oai(validator(max_length = 64))]
    pub iv: String,
    /// `rawData`; checked against `signature` when both are present.
    #[oai(validator(max_length = 8192))]
    #[oai(nullable)]
    pub raw_data: Option<String>,
    /// `signature` = sha1(rawData + session_key), hex.
    #[oai(validator(max_length = 64))]
    #[oai(nullable)]
    pub signature: Option<String>,
    /// A fresh `wx.login` code, when the session key may have rotated since login: the server
    /// exchanges it first and decrypts with the new key.
    #[oai(validator(max_length = 256))]
    #[oai(nullable)]
    pub code: Option<String>,
}

impl std::fmt::Debug for EncryptedProfileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |o: &Option<String>| if o.is_some() { "[REDACTED]" } else { "None" };
        f.debug_struct("EncryptedProfileBody")
            .field("encrypted_data", &"[REDACTED]")
            .field("iv", &self.iv)
            .field("raw_data", &self.raw_data.as_ref().map(String::len))
            .field("signature", &shown(&self.signature))
            .field("code", &shown(&self.code))
            .finish()
    }
}

/// The use case's request from the encrypted fields of either endpoint.
pub fn encrypted_profile(
    encrypted_data: String,
    iv: String,
    raw_data: Option<String>,
    signature: Option<String>,
    code: Option<&str>,
) -> Result<EncryptedProfile, InvalidValue> {
    Ok(EncryptedProfile {
        data: EncryptedData { encrypted_data, iv },
        raw_data,
        signature,
        code: code.map(LoginCode::parse).transpose()?,
    })
}

/// `POST /api/v1/me/phone`: the `getPhoneNumber` button's `code`, or (older base libraries)
/// its `encryptedData` + `iv` with an optional fresh `wx.login` `code`.
#[derive(Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct PhoneBody {
    /// Alone: the code from `<button open-type="getPhoneNumber">` (not a `wx.login` code).
    /// With `encryptedData`: a fresh `wx.login` code whose session key decrypts it.
    #[oai(validator(max_length = 256))]
    #[oai(nullable)]
    pub code: Option<String>,
    /// Legacy: the encrypted phone data.
    #[oai(validator(max_length = 32768))]
    #[oai(nullable)]
    pub encrypted_data: Option<String>,
    /// Legacy: the `iv` that came with it.
    #[oai(validator(max_length = 64))]
    #[oai(nullable)]
    pub iv: Option<String>,
}

impl std::fmt::Debug for PhoneBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |o: &Option<String>| if o.is_some() { "[REDACTED]" } else { "None" };
        f.debug_struct("PhoneBody")
            .field("code", &shown(&self.code))
            .field("encrypted_data", &shown(&self.encrypted_data))
            .field("iv", &self.iv)
            .finish()
    }
}

impl PhoneBody {
    /// Which of the two shapes this is; anything else is refused naming the field.
    pub fn into_request(self) -> Result<PhoneRequest, InvalidValue> {
        match (self.encrypted_data, self.iv, self.code) {
            (Some(encrypted_data), Some(iv), code) => Ok(PhoneRequest::Encrypted {
                data: EncryptedData { encrypted_data, iv },
                code: code.as_deref().map(LoginCode::parse).transpose()?,
            }),
            (Some(_), None, _) => Err(InvalidValue::new("iv", Reason::RequiredWithEncryptedData)),
            (None, Some(_), _) => Err(InvalidValue::new("encryptedData", Reason::RequiredWithIv)),
            (None, None, Some(code)) => PhoneCode::parse(&code).map(PhoneRequest::Code),
            (None, None, None) => Err(InvalidValue::new("code", Reason::NoPhoneProof)),
        }
    }
}

/// A rotated token.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct TokenReply {
    /// The new bearer token; the old one no longer works. Shown once.
    pub token: String,
    /// When the new token stops working.
    pub expires_at: DateTime<Utc>,
}

impl From<Refreshed> for TokenReply {
    fn from(r: Refreshed) -> Self {
        Self {
            token: r.token.expose().to_owned(),
            expires_at: r.expires_at,
        }
    }
}

/// Liveness and readiness answers.
#[derive(Debug, Clone, Object)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

impl Health {
    pub fn ok() -> Self {
        Self {
            status: "ok".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_do_not_debug_print_secrets() {
        let login = LoginBody {
            code: "the-code".into(),
        };
        assert!(!format!("{login:?}").contains("the-code"));
        let update = UpdateUserInfoBody {
            encrypted_data: "cipher-text".into(),
            iv: "iv".into(),
            token: Some("wxl_token".into()),
            raw_data: Some("{}".into()),
            signature: Some("sig-hex".into()),
            code: Some("fresh-code".into()),
        };
        let shown = format!("{update:?}");
        for secret in ["cipher-text", "wxl_token", "sig-hex", "fresh-code"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
