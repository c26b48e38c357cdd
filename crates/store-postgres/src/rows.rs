//! Rows as PostgreSQL returns them, and their conversion into domain values.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;
use wxlogin_domain::{
    AvatarUrl, Gender, InvalidValue, NickName, OpenId, Profile, ProfileText, Session, SessionId,
    SessionKey, SessionRecord, StoreError, TokenDigest, UnionId, User, UserId,
};

/// An identity found by `(app_id, open_id)` during login.
#[derive(Debug, FromRow)]
pub(crate) struct IdentityRow {
    pub(crate) user_id: Uuid,
    pub(crate) union_id: Option<String>,
}

/// A user with its identity in one app.
#[derive(Debug, FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    open_id: String,
    union_id: Option<String>,
    nick_name: Option<String>,
    avatar_url: Option<String>,
    gender: Option<i16>,
    country: Option<String>,
    province: Option<String>,
    city: Option<String>,
    language: Option<String>,
    phone_number: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User, StoreError> {
        let open_id = OpenId::parse(&self.open_id)
            .map_err(|_| StoreError::Unexpected("stored open_id is invalid".into()))?;
        let union_id = self
            .union_id
            .as_deref()
            .map(UnionId::parse)
            .transpose()
            .map_err(|_| StoreError::Unexpected("stored union_id is invalid".into()))?;
        let profile = Profile {
            nick_name: lenient("nick_name", self.nick_name.as_deref(), NickName::parse),
            avatar_url: lenient("avatar_url", self.avatar_url.as_deref(), AvatarUrl::parse),
            gender: lenient("gender", self.gender, |g| Gender::from_code(i64::from(g))),
            country: lenient("country", self.country.as_deref(), |s| {
                ProfileText::place("country", s)
            }),
            province: lenient("province", self.province.as_deref(), |s| {
                ProfileText::place("province", s)
            }),
            city: lenient("city", self.city.as_deref(), |s| {
                ProfileText::place("city", s)
            }),
            language: lenient("language", self.language.as_deref(), ProfileText::language),
        };
        Ok(User {
            id: UserId::from_uuid(self.id),
            open_id,
            union_id,
            profile,
            phone_number: self.phone_number,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Profile values were validated on the way in. Should the rules tighten later, a stored value
/// that no longer passes is treated as unknown (the user is asked again) rather than making the
/// user unreadable, which would lock them out.
fn lenient<V, T>(
    field: &'static str,
    value: Option<V>,
    parse: impl FnOnce(V) -> Result<T, InvalidValue>,
) -> Option<T> {
    let value = value?;
    match parse(value) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!(
                field,
                "stored profile value is no longer valid; treated as unknown"
            );
            None
        }
    }
}

/// A session with its user, as `find_session` reads it.
#[derive(Debug, FromRow)]
pub(crate) struct SessionRow {
    session_id: Uuid,
    token_digest: Vec<u8>,
    session_key: String,
    session_created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    #[sqlx(flatten)]
    user: UserRow,
}

impl SessionRow {
    pub(crate) fn into_record(self) -> Result<SessionRecord, StoreError> {
        let digest: [u8; 32] =
            self.token_digest.as_slice().try_into().map_err(|_| {
                StoreError::Unexpected("stored token digest is not 32 bytes".into())
            })?;
        // The error text must not echo the key.
        let session_key = SessionKey::from_base64(&self.session_key).map_err(|_| {
            StoreError::Unexpected("stored session key has an impossible length".into())
        })?;
        let user = self.user.into_user()?;
        let session = Session {
            id: SessionId::from_uuid(self.session_id),
            user_id: user.id,
            token_digest: TokenDigest::from_bytes(digest),
            session_key,
            created_at: self.session_created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        };
        Ok(SessionRecord { session, user })
    }
}
