//! Rows as both databases return them, and their conversion into domain values. Ids and
//! genders are the dialect's types; timestamps read back as `DateTime<Utc>` on both.
//!
//! `FromRow` is written out rather than derived: the derive lives in sqlx's proc-macro crate,
//! which compiles a second sqlx with both drivers for the build host — about a minute of a
//! newcomer's first build on two cores (`docs/benchmarks.md`, "Build time"). Each impl reads
//! its columns by name, as the derive would.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};
use wxlogin_domain::{
    AccessToken, Session, SessionId, SessionKey, SessionRecord, StoreError, StoredAccessToken,
    StoredUser, TokenDigest, User,
};

use crate::Dialect;

/// An identity found by `(app_id, open_id)` during login.
pub(crate) struct IdentityRow<D: Dialect> {
    pub(crate) user_id: D::Id,
    pub(crate) union_id: Option<String>,
}

impl<'r, D, R> FromRow<'r, R> for IdentityRow<D>
where
    D: Dialect,
    R: Row<Database = D::Db>,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, D::Db> + Type<D::Db>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            user_id: row.try_get("user_id")?,
            union_id: row.try_get("union_id")?,
        })
    }
}

/// A user with its identity in one app.
pub(crate) struct UserRow<D: Dialect> {
    id: D::Id,
    open_id: String,
    union_id: Option<String>,
    nick_name: Option<String>,
    avatar_url: Option<String>,
    gender: Option<D::Gender>,
    country: Option<String>,
    province: Option<String>,
    city: Option<String>,
    language: Option<String>,
    phone_number: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl<'r, D, R> FromRow<'r, R> for UserRow<D>
where
    D: Dialect,
    R: Row<Database = D::Db>,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, D::Db> + Type<D::Db>,
    DateTime<Utc>: Decode<'r, D::Db> + Type<D::Db>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            open_id: row.try_get("open_id")?,
            union_id: row.try_get("union_id")?,
            nick_name: row.try_get("nick_name")?,
            avatar_url: row.try_get("avatar_url")?,
            gender: row.try_get("gender")?,
            country: row.try_get("country")?,
            province: row.try_get("province")?,
            city: row.try_get("city")?,
            language: row.try_get("language")?,
            phone_number: row.try_get("phone_number")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

impl<D: Dialect> UserRow<D> {
    pub(crate) fn into_user(self) -> Result<User, StoreError> {
        let stored = StoredUser {
            id: self.id.into(),
            open_id: self.open_id,
            union_id: self.union_id,
            nick_name: self.nick_name,
            avatar_url: self.avatar_url,
            gender: self.gender.map(Into::into),
            country: self.country,
            province: self.province,
            city: self.city,
            language: self.language,
            phone_number: self.phone_number,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        // The error names the field only: identities are not secrets, but logs stay lean.
        let (user, dropped) = stored
            .into_user()
            .map_err(|e| StoreError::Unexpected(format!("stored {} is invalid", e.field)))?;
        for field in dropped {
            tracing::warn!(
                field,
                "stored profile value is no longer valid; treated as unknown"
            );
        }
        Ok(user)
    }
}

/// A session with its user, as `find_session` reads it.
pub(crate) struct SessionRow<D: Dialect> {
    session_id: D::Id,
    token_digest: Vec<u8>,
    session_key: String,
    session_created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_seen_at: DateTime<Utc>,
    user: UserRow<D>,
}

impl<'r, D, R> FromRow<'r, R> for SessionRow<D>
where
    D: Dialect,
    R: Row<Database = D::Db>,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, D::Db> + Type<D::Db>,
    Vec<u8>: Decode<'r, D::Db> + Type<D::Db>,
    DateTime<Utc>: Decode<'r, D::Db> + Type<D::Db>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            session_id: row.try_get("session_id")?,
            token_digest: row.try_get("token_digest")?,
            session_key: row.try_get("session_key")?,
            session_created_at: row.try_get("session_created_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            // The user's columns come in the same row.
            user: UserRow::from_row(row)?,
        })
    }
}

impl<D: Dialect> SessionRow<D> {
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
            id: SessionId::from_uuid(self.session_id.into()),
            user_id: user.id,
            token_digest: TokenDigest::from_bytes(digest),
            session_key,
            created_at: self.session_created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_seen_at: self.last_seen_at,
        };
        Ok(SessionRecord { session, user })
    }
}

/// An app's access-token row: the token (absent until the first fetch, or after a rejected
/// token was forgotten) and the lease of the caller renewing it. No `Debug`: the token is a
/// secret.
pub(crate) struct AccessTokenRow {
    token: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    /// NULL on rows stored before migration 0004.
    fetched_at: Option<DateTime<Utc>>,
    lease_until: Option<DateTime<Utc>>,
}

impl<'r, R> FromRow<'r, R> for AccessTokenRow
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            token: row.try_get("token")?,
            expires_at: row.try_get("expires_at")?,
            fetched_at: row.try_get("fetched_at")?,
            lease_until: row.try_get("lease_until")?,
        })
    }
}

impl AccessTokenRow {
    /// The stored token, if there is one. A token stored before its fetch time was recorded
    /// counts as fetched long ago: inside the margin it is fetched again, once.
    pub(crate) fn token(&self) -> Option<StoredAccessToken> {
        let (token, expires_at) = (self.token.as_ref()?, self.expires_at?);
        Some(StoredAccessToken {
            token: AccessToken::new(token.clone()),
            expires_at,
            fetched_at: self.fetched_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
        })
    }

    /// When the lease expires; `None` while nobody holds it.
    pub(crate) fn lease_until(&self) -> Option<DateTime<Utc>> {
        self.lease_until
    }
}
