//! The operators' API under `/admin/v1`: search users, a user's detail, revoking a user's
//! sessions, statistics. Authenticated with HTTP Basic (an operator of `[[admin.users]]`),
//! never with a user's bearer token: a `Bearer` header fails the Basic scheme before any
//! handler runs.
//!
//! A refused sign-in is answered only after [`FAILURE_DELAY`] (the password check itself is
//! the verifier's, bounded there), so guessing is slow; every action is logged with the
//! operator's name, never the password or the `Authorization` header.
//!
//! Generic over the inbound port [`AdminService`] alone, like the rest of the HTTP adapter.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::Response;
use poem::http::{HeaderValue, StatusCode, header};
use poem_openapi::auth::Basic;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Object, OpenApi, SecurityScheme};
use uuid::Uuid;
use wxlogin_domain::{
    AdminError, AdminService, AdminUserError, Credentials, InvalidValue, NickNameQuery, OpenId,
    PageLimit, Password, Reason, Stats, UserDetail, UserId, UserPage, UserQuery,
};

use crate::http::dto::UserDto;
use crate::http::error::SearchUsersError;
use crate::http::{ApiTags, Reply, Success};

/// Where the API is mounted: answers under it that refuse credentials carry the Basic
/// challenge.
pub const PREFIX: &str = "/admin/";

/// How long a refused sign-in waits before it is answered.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// The challenge of the API's 401 answers (RFC 7617).
pub const CHALLENGE: &str = "Basic realm=\"wxlogin admin\", charset=\"UTF-8\"";

/// An operator's name and password (`[[admin.users]]`), as HTTP Basic.
#[derive(SecurityScheme)]
#[oai(ty = "basic")]
pub struct OperatorAuth(pub Basic);

impl OperatorAuth {
    fn credentials(&self) -> Credentials {
        Credentials {
            name: self.0.username.clone(),
            password: Password::new(self.0.password.clone()),
        }
    }
}

/// Adds the Basic challenge to a 401 answer of the operators' API (whichever part of the
/// server refused: the security scheme when the header is missing or not Basic, or a handler).
pub fn challenge(path: &str, response: &mut Response) {
    if path.starts_with(PREFIX) && response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
}

/// A page of users.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct UserPageReply {
    /// The users of this page, in id order (creation order: ids are UUID v7).
    pub users: Vec<UserDto>,
    /// Send it as `cursor` for the next page; `null` on the last page. Opaque.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

impl From<UserPage> for UserPageReply {
    fn from(page: UserPage) -> Self {
        Self {
            users: page.users.iter().map(UserDto::from).collect(),
            next_cursor: page.next.map(|id| encode_cursor(&id)),
        }
    }
}

/// A user and its sessions.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct UserDetailReply {
    /// The user, shown with its identity in the default app (or else its earliest).
    pub user: UserDto,
    /// Sessions that work now: not revoked, not expired, used within the idle timeout.
    pub active_sessions: u64,
}

impl From<UserDetail> for UserDetailReply {
    fn from(d: UserDetail) -> Self {
        Self {
            user: UserDto::from(&d.user),
            active_sessions: d.active_sessions,
        }
    }
}

/// What a revocation did.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct RevokedReply {
    /// How many sessions were revoked: every one that was neither revoked nor past its
    /// lifetime (idle sessions included).
    pub revoked: u64,
}

/// Figures of the whole service (every app).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct StatsReply {
    /// Users stored.
    pub users: u64,
    /// Sessions that work now: not revoked, not expired, used within the idle timeout.
    pub active_sessions: u64,
    /// Logins (not refreshes) in the last hour.
    pub logins_last_hour: u64,
    /// Logins (not refreshes) in the last 24 hours.
    pub logins_last_day: u64,
}

impl From<Stats> for StatsReply {
    fn from(s: Stats) -> Self {
        Self {
            users: s.users,
            active_sessions: s.active_sessions,
            logins_last_hour: s.logins_last_hour,
            logins_last_day: s.logins_last_day,
        }
    }
}

/// The cursor after `id`: base64url of its 16 bytes. Opaque to clients, stable across
/// instances and restarts.
pub fn encode_cursor(id: &UserId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_uuid().as_bytes())
}

/// The position a cursor names; only what [`encode_cursor`] makes is accepted.
pub fn decode_cursor(cursor: &str) -> Result<UserId, InvalidValue> {
    let invalid = InvalidValue::new("cursor", Reason::NotACursor);
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| invalid)?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| invalid)?;
    Ok(UserId::from_uuid(Uuid::from_bytes(bytes)))
}

fn user_id(id: &str) -> Result<UserId, InvalidValue> {
    Uuid::try_parse(id.trim())
        .map(UserId::from_uuid)
        .map_err(|_| InvalidValue::new("id", Reason::NotAUserId))
}

/// An empty query value counts as absent, as an empty optional form field does.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Whether an error is a refused sign-in (which waits [`FAILURE_DELAY`] and is logged).
trait Refusal {
    fn is_refusal(&self) -> bool;
}

impl Refusal for AdminError {
    fn is_refusal(&self) -> bool {
        matches!(self, Self::InvalidCredentials)
    }
}

impl Refusal for AdminUserError {
    fn is_refusal(&self) -> bool {
        matches!(self, Self::InvalidCredentials)
    }
}

/// `/admin/v1/users`, `/admin/v1/users/{id}`, `/admin/v1/users/{id}/revoke-sessions`,
/// `/admin/v1/stats`.
pub struct AdminApi<A> {
    admin: Arc<A>,
}

impl<A> AdminApi<A> {
    pub fn new(admin: Arc<A>) -> Self {
        Self { admin }
    }
}

impl<A: AdminService> AdminApi<A> {
    /// The use case's result, after the delay and the log line a refusal gets.
    async fn refused_slowly<T, E: Refusal>(
        auth: &OperatorAuth,
        action: &'static str,
        result: Result<T, E>,
    ) -> Result<T, E> {
        if let Err(e) = &result
            && e.is_refusal()
        {
            // The claimed name, escaped (Debug): it is whatever the client sent.
            tracing::warn!(operator = ?auth.0.username, action, "operator sign-in refused");
            tokio::time::sleep(FAILURE_DELAY).await;
        }
        result
    }
}

#[OpenApi]
impl<A: AdminService> AdminApi<A> {
    /// Search users
    ///
    /// Users whose identity in any app has the openid `openId` (exactly) and/or whose
    /// nickname contains `q` (case-insensitive for ASCII), in id order (creation order),
    /// `limit` (1–100, default 20) at a time. Pass `nextCursor` as `cursor` for the next page;
    /// it is `null` on the last page. Without filters, every user.
    #[oai(
        path = "/admin/v1/users",
        method = "get",
        operation_id = "adminSearchUsers",
        tag = "ApiTags::Admin"
    )]
    async fn search_users(
        &self,
        auth: OperatorAuth,
        /// An openid, matched exactly against every app's identities.
        #[oai(name = "openId")]
        open_id: Query<Option<String>>,
        /// A nickname substring (case-insensitive for ASCII; `%` and `_` are plain characters).
        q: Query<Option<String>>,
        /// Users per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Reply<UserPageReply, SearchUsersError> {
        let query = UserQuery {
            open_id: given(open_id.0).as_deref().map(OpenId::parse).transpose()?,
            nick_name: given(q.0)
                .as_deref()
                .map(NickNameQuery::parse)
                .transpose()?,
            after: given(cursor.0).as_deref().map(decode_cursor).transpose()?,
            limit: limit
                .0
                .map(PageLimit::parse)
                .transpose()?
                .unwrap_or_default(),
        };
        let filtered = query.open_id.is_some() || query.nick_name.is_some();
        let result = self.admin.search_users(&auth.credentials(), query).await;
        let page = Self::refused_slowly(&auth, "search_users", result)
            .await
            .map_err(SearchUsersError)?;
        tracing::info!(
            operator = %auth.0.username,
            action = "search_users",
            filtered,
            found = page.users.len(),
            "operator action"
        );
        Ok(Success::json(UserPageReply::from(page)))
    }

    /// A user's detail
    ///
    /// The user and how many of its sessions work now (not revoked, not expired, used within
    /// the idle timeout). 404 `not_found` for an unknown id.
    #[oai(
        path = "/admin/v1/users/:id",
        method = "get",
        operation_id = "adminUserDetail",
        tag = "ApiTags::Admin"
    )]
    async fn user_detail(
        &self,
        auth: OperatorAuth,
        /// The user's id.
        id: Path<String>,
    ) -> Reply<UserDetailReply, AdminUserError> {
        let id = user_id(&id.0)?;
        let result = self.admin.user_detail(&auth.credentials(), id).await;
        let detail = Self::refused_slowly(&auth, "user_detail", result).await?;
        tracing::info!(
            operator = %auth.0.username,
            action = "user_detail",
            user_id = %id,
            "operator action"
        );
        Ok(Success::json(UserDetailReply::from(detail)))
    }

    /// Revoke a user's sessions
    ///
    /// Ends every session of the user at once, on every instance: its tokens answer
    /// `invalid_token` from now on (the user can log in again). Answers how many sessions were
    /// revoked. 404 `not_found` for an unknown id.
    #[oai(
        path = "/admin/v1/users/:id/revoke-sessions",
        method = "post",
        operation_id = "adminRevokeSessions",
        tag = "ApiTags::Admin"
    )]
    async fn revoke_sessions(
        &self,
        auth: OperatorAuth,
        /// The user's id.
        id: Path<String>,
    ) -> Reply<RevokedReply, AdminUserError> {
        let id = user_id(&id.0)?;
        let result = self.admin.revoke_sessions(&auth.credentials(), id).await;
        let revoked = Self::refused_slowly(&auth, "revoke_sessions", result).await?;
        tracing::info!(
            operator = %auth.0.username,
            action = "revoke_sessions",
            user_id = %id,
            revoked,
            "operator action"
        );
        Ok(Success::json(RevokedReply { revoked }))
    }

    /// Statistics
    ///
    /// Users, sessions active now, and logins (not refreshes) in the last hour and the last
    /// 24 hours, over every app.
    #[oai(
        path = "/admin/v1/stats",
        method = "get",
        operation_id = "adminStats",
        tag = "ApiTags::Admin"
    )]
    async fn stats(&self, auth: OperatorAuth) -> Reply<StatsReply, AdminError> {
        let result = self.admin.stats(&auth.credentials()).await;
        let stats = Self::refused_slowly(&auth, "stats", result).await?;
        tracing::info!(operator = %auth.0.username, action = "stats", "operator action");
        Ok(Success::json(StatsReply::from(stats)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nothing_else_is_one() {
        let id = UserId::new();
        let cursor = encode_cursor(&id);
        assert_eq!(cursor.len(), 22);
        assert_eq!(decode_cursor(&cursor), Ok(id));
        for bad in [
            "",
            "abc",
            "not a cursor!",
            &format!("{cursor}A"),
            &id.to_string(),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
