//! Validated values and entities. Constructors reject bad input, so a value of one of these
//! types is always well-formed. Nothing here knows about HTTP, SQL or serde.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Why a value was rejected; the message names the field and never echoes a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: Reason,
}

impl InvalidValue {
    pub const fn new(field: &'static str, reason: Reason) -> Self {
        Self { field, reason }
    }
}

/// Writes [`Reason`] and its English text from one list.
macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// Why a value was refused: a closed list, so that whoever shows a reason (the HTTP
        /// layer, in each language it speaks) can say every one. [`Reason::text`] is English.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The reason in English, to follow the field's name ("nickName: is too long").
            pub const fn text(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }
        }
    };
}

reasons! {
    Empty = "must not be empty",
    TooLong = "is too long",
    TooLongFor64 = "is too long (at most 64 characters)",
    NotPrintableAscii = "must be printable ASCII",
    NotAnOperatorName = "must be printable ASCII without spaces or colons",
    ControlCharacters = "must not contain control characters",
    ImpossibleLength = "has an impossible length",
    NotAGender = "must be 0, 1 or 2",
    NotAnHttpUrl = "must be an http or https URL",
    NotPhoneDigits = "must be digits with an optional leading +",
    PhoneDigitCount = "must have 3 to 20 digits",
    NotAnImage = "is not a PNG, JPEG or WebP image",
    Unreadable = "could not be read",
    NotInLimitRange = "must be between 1 and 100",
    NotACursor = "is not a cursor this API gave",
    NotAUserId = "must be a user id (a UUID)",
    RequiredWithIv = "is required with iv",
    RequiredWithEncryptedData = "is required with encryptedData",
    NoPhoneProof = "send the getPhoneNumber code, or encryptedData and iv",
    ComesWithSignature = "must come together with signature",
    NotBase64 = "is not valid base64",
    NotOneBlock = "must decode to 16 bytes",
    TokenConflict = "the body's token and the Authorization header's differ: send one",
    UnknownApp = "names no app this server serves",
    UnknownMiniProgram = "names a mini-program this server does not serve",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks an identifier-like value: non-empty after trimming, at most `max` bytes, printable ASCII.
fn parse_ident(field: &'static str, s: &str, max: usize) -> Result<String, InvalidValue> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InvalidValue::new(field, Reason::Empty));
    }
    if s.len() > max {
        return Err(InvalidValue::new(field, Reason::TooLong));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidValue::new(field, Reason::NotPrintableAscii));
    }
    Ok(s.to_owned())
}

macro_rules! ident_newtype {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                parse_ident($field, s, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

ident_newtype!(
    /// A mini-program's app id (`wx…`), the first half of a WeChat identity.
    AppId,
    "appId",
    64
);
ident_newtype!(
    /// A user's openid within one mini-program.
    OpenId,
    "openId",
    128
);
ident_newtype!(
    /// A user's unionid across the mini-programs of one Open Platform account.
    UnionId,
    "unionId",
    128
);

/// The one-time code from `wx.login` (or a fresh one sent beside encrypted data).
#[derive(Clone, PartialEq, Eq)]
pub struct LoginCode(String);

impl LoginCode {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        parse_ident("code", s, 256).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Codes are single-use credentials: keep them out of Debug output and logs.
impl fmt::Debug for LoginCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginCode([REDACTED])")
    }
}

/// Our own user id (UUID v7: time-ordered, so inserts stay local in the primary-key index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A session's id (not its token: the id is safe to log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(Uuid);

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

/// WeChat's `session_key` as WeChat sends it (base64 text of 16 bytes). Never returned or logged.
#[derive(Clone)]
pub struct SessionKey(SecretString);

impl SessionKey {
    /// Wraps the base64 text. Its length is checked where it is used (the cipher), because
    /// a stored key must stay loadable even if it is malformed.
    pub fn from_base64(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        if s.is_empty() || s.len() > 64 {
            return Err(InvalidValue::new("sessionKey", Reason::ImpossibleLength));
        }
        Ok(Self(SecretString::from(s.to_owned())))
    }
    pub fn expose_base64(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([REDACTED])")
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.expose_base64() == other.expose_base64()
    }
}

/// An opaque bearer token as handed to the client once. Only its digest is stored.
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// The recognisable prefix of every token wxlogin issues (for secret scanners and humans).
    pub const PREFIX: &'static str = "wxl_";

    pub fn new(s: String) -> Self {
        Self(SecretString::from(s))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

/// SHA-256 of a token: what the database holds instead of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// WeChat's gender code: 0 unknown, 1 male, 2 female.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    Unknown,
    Male,
    Female,
}

impl Gender {
    pub fn from_code(code: i64) -> Result<Self, InvalidValue> {
        match code {
            0 => Ok(Self::Unknown),
            1 => Ok(Self::Male),
            2 => Ok(Self::Female),
            _ => Err(InvalidValue::new("gender", Reason::NotAGender)),
        }
    }
    pub const fn code(self) -> i64 {
        match self {
            Self::Unknown => 0,
            Self::Male => 1,
            Self::Female => 2,
        }
    }
}

/// The nickname WeChat substitutes for a real one since 2022-10-25.
pub const PLACEHOLDER_NICKNAME: &str = "微信用户";

/// A validated profile text field (trimmed, bounded, no control characters).
fn parse_text(
    field: &'static str,
    s: &str,
    max_chars: usize,
    allow_empty: bool,
) -> Result<String, InvalidValue> {
    let t = s.trim();
    if has_control(t) {
        return Err(InvalidValue::new(field, Reason::ControlCharacters));
    }
    if !allow_empty && t.is_empty() {
        return Err(InvalidValue::new(field, Reason::Empty));
    }
    if t.chars().count() > max_chars {
        return Err(InvalidValue::new(field, Reason::TooLong));
    }
    Ok(t.to_owned())
}

/// A validated nickname: 1–64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NickName(String);

impl NickName {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        parse_text("nickName", s, 64, false).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True for WeChat's anonymous placeholder ("微信用户").
    pub fn is_placeholder(&self) -> bool {
        self.0 == PLACEHOLDER_NICKNAME
    }
}

/// A validated avatar URL: `http` or `https`, at most 1024 bytes of printable ASCII (a URL on
/// the wire; anything else is percent-encoded first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarUrl(String);

impl AvatarUrl {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let t = parse_text("avatarUrl", s, 1024, false)?;
        if t.len() > 1024 {
            return Err(InvalidValue::new("avatarUrl", Reason::TooLong));
        }
        let lower = t.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .ok_or(InvalidValue::new("avatarUrl", Reason::NotAnHttpUrl))?;
        if rest.is_empty() || rest.starts_with('/') || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new("avatarUrl", Reason::NotAnHttpUrl));
        }
        Ok(Self(t))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// WeChat's grey default avatar, handed out instead of a real one since 2022-10-25.
    pub fn is_placeholder(&self) -> bool {
        // The anonymous avatar is served from thirdwx/wx.qlogo.cn under a fixed path.
        self.0.contains("/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/")
    }
}

/// A validated short text field: `country`, `province`, `city` (≤ 64) or `language` (≤ 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileText(String);

impl ProfileText {
    pub fn place(field: &'static str, s: &str) -> Result<Self, InvalidValue> {
        parse_text(field, s, 64, true).map(Self)
    }
    pub fn language(s: &str) -> Result<Self, InvalidValue> {
        parse_text("language", s, 16, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The profile as WeChat names it. Every field may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub nick_name: Option<NickName>,
    pub avatar_url: Option<AvatarUrl>,
    pub gender: Option<Gender>,
    pub country: Option<ProfileText>,
    pub province: Option<ProfileText>,
    pub city: Option<ProfileText>,
    pub language: Option<ProfileText>,
}

impl Profile {
    /// Complete means a real nickname and a real avatar; WeChat's placeholders do not count.
    pub fn is_complete(&self) -> bool {
        matches!(&self.nick_name, Some(n) if !n.is_placeholder())
            && matches!(&self.avatar_url, Some(a) if !a.is_placeholder())
    }

    /// Applies an update: fields present in the update replace ours, absent ones are kept.
    pub fn apply(&mut self, update: &ProfileUpdate) {
        let p = &update.0;
        macro_rules! take {
            ($f:ident) => {
                if p.$f.is_some() {
                    self.$f = p.$f.clone();
                }
            };
        }
        take!(nick_name);
        take!(avatar_url);
        take!(gender);
        take!(country);
        take!(province);
        take!(city);
        take!(language);
    }
}

/// A partial profile: `Some` fields are written, `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate(pub Profile);

/// A user of ours, with the identity of the configured mini-program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub open_id: OpenId,
    pub union_id: Option<UnionId>,
    pub profile: Profile,
    pub phone_number: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub fn profile_complete(&self) -> bool {
        self.profile.is_complete()
    }
}

/// A user as a store holds it: plain values, turned back into a [`User`] by
/// [`StoredUser::into_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub id: Uuid,
    pub open_id: String,
    pub union_id: Option<String>,
    pub nick_name: Option<String>,
    pub avatar_url: Option<String>,
    pub gender: Option<i64>,
    pub country: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub language: Option<String>,
    pub phone_number: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StoredUser {
    /// Rebuilds the user. The identity must be valid (an error otherwise). Profile values were
    /// validated on the way in; should the rules tighten later, a stored value that no longer
    /// passes reads back as unknown (the user is asked again) rather than making the user
    /// unreadable, which would lock them out. The names of such fields come back too, for the
    /// adapter to log.
    pub fn into_user(self) -> Result<(User, Vec<&'static str>), InvalidValue> {
        let mut dropped = Vec::new();
        let mut keep = |field: &'static str, ok: bool| {
            if !ok {
                dropped.push(field);
            }
        };
        fn lenient<V, T>(
            value: Option<V>,
            parse: impl FnOnce(V) -> Result<T, InvalidValue>,
        ) -> (Option<T>, bool) {
            match value.map(parse) {
                None => (None, true),
                Some(Ok(v)) => (Some(v), true),
                Some(Err(_)) => (None, false),
            }
        }
        let open_id = OpenId::parse(&self.open_id)?;
        let union_id = self.union_id.as_deref().map(UnionId::parse).transpose()?;
        let place = |field| move |s: &str| ProfileText::place(field, s);
        let (nick_name, ok) = lenient(self.nick_name.as_deref(), NickName::parse);
        keep("nick_name", ok);
        let (avatar_url, ok) = lenient(self.avatar_url.as_deref(), AvatarUrl::parse);
        keep("avatar_url", ok);
        let (gender, ok) = lenient(self.gender, Gender::from_code);
        keep("gender", ok);
        let (country, ok) = lenient(self.country.as_deref(), place("country"));
        keep("country", ok);
        let (province, ok) = lenient(self.province.as_deref(), place("province"));
        keep("province", ok);
        let (city, ok) = lenient(self.city.as_deref(), place("city"));
        keep("city", ok);
        let (language, ok) = lenient(self.language.as_deref(), ProfileText::language);
        keep("language", ok);
        let user = User {
            id: UserId::from_uuid(self.id),
            open_id,
            union_id,
            profile: Profile {
                nick_name,
                avatar_url,
                gender,
                country,
                province,
                city,
                language,
            },
            phone_number: self.phone_number,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        Ok((user, dropped))
    }
}

/// A login session as stored: only the token's digest and the session key of its own login.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub token_digest: TokenDigest,
    pub session_key: SessionKey,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the session was last used, to the store's write granularity (the service writes
    /// it at most once a minute); the idle timeout counts from here.
    pub last_seen_at: DateTime<Utc>,
}

/// Encrypted data as the client sends it (`encryptedData` and `iv`, both base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedData {
    pub encrypted_data: String,
    pub iv: String,
}

/// What a decrypted user-info payload says (after its watermark was checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptedUserInfo {
    pub open_id: Option<OpenId>,
    pub union_id: Option<UnionId>,
    pub profile: ProfileUpdate,
}

/// What `jscode2session` answers on success.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeSession {
    pub open_id: OpenId,
    pub union_id: Option<UnionId>,
    pub session_key: SessionKey,
}

/// A phone number as WeChat reports it: `+86…` with country code, or the bare number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// 3–32 characters of digits, with an optional leading `+`, spaces and dashes.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        const FIELD: &str = "phoneNumber";
        let s = s.trim();
        let digits = s.chars().filter(char::is_ascii_digit).count();
        let allowed = s
            .char_indices()
            .all(|(i, c)| c.is_ascii_digit() || c == ' ' || c == '-' || (c == '+' && i == 0));
        if !allowed {
            return Err(InvalidValue::new(FIELD, Reason::NotPhoneDigits));
        }
        if !(3..=20).contains(&digits) || s.len() > 32 {
            return Err(InvalidValue::new(FIELD, Reason::PhoneDigitCount));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The code of a `getPhoneNumber` button (not a `wx.login` code); single use, 5 minutes.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneCode(String);

impl PhoneCode {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        parse_ident("code", s, 256).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneCode([REDACTED])")
    }
}

/// An access token of WeChat's server API (`cgi-bin/stable_token`), a secret.
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    pub fn new(s: String) -> Self {
        Self(SecretString::from(s))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([REDACTED])")
    }
}

/// An access token and how long WeChat says it stays valid.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedAccessToken {
    pub token: AccessToken,
    pub expires_in: chrono::Duration,
}

/// What `getuserphonenumber` (or legacy encrypted phone data) says, after its watermark names
/// our app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneInfo {
    /// With the country code for numbers outside mainland China (`+1…`); as WeChat gives it.
    pub phone_number: PhoneNumber,
    /// Without the country code.
    pub pure_phone_number: String,
    /// `86`, as text whether WeChat sent a string or a number.
    pub country_code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_trimmed_and_bounded() {
        assert_eq!(OpenId::parse("  oABC ").map(|o| o.0), Ok("oABC".into()));
        assert!(OpenId::parse("").is_err());
        assert!(OpenId::parse("o a").is_err());
        assert!(OpenId::parse(&"o".repeat(129)).is_err());
        assert!(LoginCode::parse("0a1\u{0}").is_err());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let key = SessionKey::from_base64("HyVFkGl5F5OQWJZZaNzBBg==").expect("valid");
        assert!(!format!("{key:?}").contains("HyVF"));
        let token = Token::new("wxl_secret".into());
        assert!(!format!("{token:?}").contains("secret"));
        let code = LoginCode::parse("thecode").expect("valid");
        assert!(!format!("{code:?}").contains("thecode"));
    }

    #[test]
    fn profile_text_rules() {
        assert!(NickName::parse("").is_err());
        assert!(NickName::parse("   ").is_err());
        assert_eq!(NickName::parse(" 小明 ").map(|n| n.0), Ok("小明".into()));
        assert!(NickName::parse(&"字".repeat(64)).is_ok());
        assert!(NickName::parse(&"字".repeat(65)).is_err());
        assert!(NickName::parse("a\u{0}b").is_err());
        assert!(ProfileText::language(&"x".repeat(17)).is_err());
        assert!(ProfileText::place("city", &"x".repeat(64)).is_ok());
        assert!(AvatarUrl::parse("https://example.com/a.png").is_ok());
        assert!(AvatarUrl::parse("javascript:alert(1)").is_err());
        assert!(AvatarUrl::parse("https://").is_err());
        assert!(AvatarUrl::parse(&format!("https://e.com/{}", "a".repeat(1020))).is_err());
        assert!(Gender::from_code(3).is_err());
        assert_eq!(Gender::from_code(2).map(Gender::code), Ok(2));
    }

    #[test]
    fn completeness_needs_real_nickname_and_avatar() {
        let mut p = Profile::default();
        assert!(!p.is_complete());
        p.nick_name = NickName::parse(PLACEHOLDER_NICKNAME).ok();
        p.avatar_url = AvatarUrl::parse("https://example.com/a.png").ok();
        assert!(!p.is_complete());
        p.nick_name = NickName::parse("Band").ok();
        assert!(p.is_complete());
        p.avatar_url = AvatarUrl::parse("https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132").ok();
        assert!(!p.is_complete());
    }

    #[test]
    fn stored_users_read_back_leniently_but_identities_strictly() {
        let stored = StoredUser {
            id: Uuid::nil(),
            open_id: "oStored".into(),
            union_id: None,
            nick_name: Some("ok".into()),
            avatar_url: Some("ftp://no".into()),
            gender: Some(7),
            country: None,
            province: None,
            city: Some("Guangzhou".into()),
            language: Some("x".repeat(17)),
            phone_number: None,
            created_at: DateTime::<Utc>::MIN_UTC,
            updated_at: DateTime::<Utc>::MIN_UTC,
        };
        let (user, dropped) = stored.clone().into_user().expect("identity is valid");
        assert_eq!(dropped, ["avatar_url", "gender", "language"]);
        assert_eq!(
            user.profile.nick_name.as_ref().map(NickName::as_str),
            Some("ok")
        );
        assert_eq!(
            user.profile.city.as_ref().map(ProfileText::as_str),
            Some("Guangzhou")
        );
        assert_eq!(user.profile.avatar_url, None);
        assert!(
            StoredUser {
                open_id: String::new(),
                ..stored
            }
            .into_user()
            .is_err()
        );
    }

    #[test]
    fn apply_keeps_absent_fields() {
        let mut p = Profile {
            nick_name: NickName::parse("A").ok(),
            city: ProfileText::place("city", "Guangzhou").ok(),
            ..Profile::default()
        };
        let update = ProfileUpdate(Profile {
            nick_name: NickName::parse("B").ok(),
            ..Profile::default()
        });
        p.apply(&update);
        assert_eq!(p.nick_name.as_ref().map(NickName::as_str), Some("B"));
        assert_eq!(p.city.as_ref().map(ProfileText::as_str), Some("Guangzhou"));
    }
}

/// An uploaded avatar's id: the last part of the URL wxlogin serves it at
/// (`/avatars/{id}`). Safe to show: it names an image the user chose to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvatarId(Uuid);

impl AvatarId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
    /// Parses the hyphenated form that URLs carry; anything else is no avatar's id.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 36).then(|| Uuid::try_parse(s).ok().map(Self))?
    }
}

impl Default for AvatarId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for AvatarId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// The image formats an avatar may have, recognised by their bytes (never by a file name or a
/// declared content type, which the client chooses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
}

impl ImageKind {
    /// The format whose signature `bytes` start with: PNG's eight-byte signature, JPEG's SOI
    /// marker followed by another marker, or a RIFF container of type `WEBP`.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    /// The `Content-Type` it is served with.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// The inverse of [`ImageKind::content_type`] (how the stores keep it).
    pub fn from_content_type(s: &str) -> Option<Self> {
        match s {
            "image/png" => Some(Self::Png),
            "image/jpeg" => Some(Self::Jpeg),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// An image accepted as an avatar: its bytes, which start like a PNG, JPEG or WebP file.
#[derive(Clone, PartialEq, Eq)]
pub struct AvatarImage {
    kind: ImageKind,
    bytes: Vec<u8>,
}

impl AvatarImage {
    /// Accepts `bytes` if [`ImageKind::sniff`] recognises them.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, InvalidValue> {
        let kind = ImageKind::sniff(&bytes).ok_or(InvalidValue::new("file", Reason::NotAnImage))?;
        Ok(Self { kind, bytes })
    }
    pub const fn kind(&self) -> ImageKind {
        self.kind
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

// The bytes are an image, not text worth a log line.
impl std::fmt::Debug for AvatarImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvatarImage")
            .field("kind", &self.kind)
            .field("len", &self.bytes.len())
            .finish()
    }
}
