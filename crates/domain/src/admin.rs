//! The operators' side of wxlogin (`/admin/v1`): its inbound port ([`AdminService`], the use
//! cases an operator's request runs), its outbound ports ([`Directory`], what the store answers
//! about users and sessions; [`PasswordVerifier`], the slow check of an operator's password),
//! and [`Admin`], which implements the first over the other two.
//!
//! Operators are people with passwords: their passwords are checked against argon2id PHC
//! hashes from the configuration (the verifier's business, never the domain's), and an unknown
//! operator name costs the same as a wrong password. A user's bearer token is never an
//! operator's credential.
//!
//! Must never depend on an IO crate (sqlx, poem, reqwest, tokio's runtime), nor on argon2.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::model::{AppId, InvalidValue, OpenId, Reason, User, UserId};
use crate::ports::{Clock, StoreError};

/// How long the store keeps login events (at least): the longest window of [`Stats`].
pub const LOGIN_EVENTS_KEPT: Duration = Duration::days(1);

/// An operator's name, as configured in `[[admin.users]]` and sent as the user-id of HTTP
/// Basic: 1–64 printable ASCII characters, no colon (Basic splits at the first one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        const FIELD: &str = "name";
        if s.is_empty() {
            return Err(InvalidValue::new(FIELD, Reason::Empty));
        }
        if s.len() > 64 {
            return Err(InvalidValue::new(FIELD, Reason::TooLongFor64));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(InvalidValue::new(FIELD, Reason::NotAnOperatorName));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as an operator typed it. A secret: `Debug` never shows it.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn new(s: String) -> Self {
        Self(SecretString::from(s))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// A password hash as configured: a PHC string (`$argon2id$v=19$m=…`). Its format is the
/// verifier's to check (the configuration does so at start). Not secret like a password, but
/// an offline guessing target: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

/// A configured operator: a name and the hash of its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAccount {
    pub name: OperatorName,
    pub password_hash: PasswordHash,
}

/// What an operator's request presents (HTTP Basic): a claimed name and a password.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub name: String,
    pub password: Password,
}

/// How many users one page of a search holds: 1 to [`PageLimit::MAX`], [`PageLimit::DEFAULT`]
/// when the request names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: Self = Self(20);
    pub const MAX: u32 = 100;

    pub fn parse(n: u32) -> Result<Self, InvalidValue> {
        if (1..=Self::MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(InvalidValue::new("limit", Reason::NotInLimitRange))
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A nickname substring to search for: trimmed, 1–64 characters, no control characters.
/// Matched case-insensitively for ASCII; `%` and `_` are plain characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NickNameQuery(String);

impl NickNameQuery {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        const FIELD: &str = "q";
        let s = s.trim();
        if s.is_empty() {
            return Err(InvalidValue::new(FIELD, Reason::Empty));
        }
        if s.chars().count() > 64 {
            return Err(InvalidValue::new(FIELD, Reason::TooLongFor64));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidValue::new(FIELD, Reason::ControlCharacters));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An operator's search: the filters (all that are given must match), the page's position
/// and size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// An openid in any app's identity of the user, matched exactly.
    pub open_id: Option<OpenId>,
    /// A substring of the nickname.
    pub nick_name: Option<NickNameQuery>,
    /// Only users whose id comes after this one (the cursor of the previous page).
    pub after: Option<UserId>,
    pub limit: PageLimit,
}

/// One page of users, in id order (ids are UUID v7: creation order). `next` is the position
/// after the page's last user when there are more users to show, `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    pub users: Vec<User>,
    pub next: Option<UserId>,
}

/// A user and how many of its sessions are active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDetail {
    pub user: User,
    pub active_sessions: u64,
}

/// The figures of `GET /admin/v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub users: u64,
    pub active_sessions: u64,
    pub logins_last_hour: u64,
    pub logins_last_day: u64,
}

/// What "active" means at one instant, as [`SessionState::of`](crate::SessionState::of)
/// decides it: not revoked, expiring after `now`, and last seen after `seen_after` (`now`
/// minus the idle timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveAt {
    pub now: DateTime<Utc>,
    pub seen_after: DateTime<Utc>,
}

/// A search as the store runs it: the query's filters, the app whose identity each user is
/// shown with, and how many users to return at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSearch {
    /// Each user is shown with its identity in this app, or else its earliest identity.
    pub app_id: AppId,
    pub open_id: Option<OpenId>,
    pub nick_name: Option<NickNameQuery>,
    pub after: Option<UserId>,
    pub limit: u32,
}

/// The windows of [`Directory::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    pub active: ActiveAt,
    /// Logins at or after this instant count as the last hour's.
    pub hour_from: DateTime<Utc>,
    /// Logins at or after this instant count as the last day's.
    pub day_from: DateTime<Utc>,
}

/// What the store tells operators about users and sessions. Each method is one statement or
/// one transaction.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Directory: Clone + Send + Sync + 'static {
    /// At most `search.limit` users matching every filter given, with ids after
    /// `search.after`, in id order; each with its identity in `search.app_id`, or else its
    /// earliest identity.
    fn search_users(
        &self,
        search: UserSearch,
    ) -> impl Future<Output = Result<Vec<User>, StoreError>> + Send;

    /// The user (shown as in [`Directory::search_users`]) and how many of its sessions are
    /// active at `active`; `None` for an unknown user.
    fn user_detail(
        &self,
        app_id: &AppId,
        user_id: UserId,
        active: ActiveAt,
    ) -> impl Future<Output = Result<Option<UserDetail>, StoreError>> + Send;

    /// Revokes at `now` every session of the user that is neither revoked nor past its
    /// absolute lifetime (idle ones too: a longer idle timeout would revive them), and returns
    /// how many it revoked. `NotFound` for an unknown user.
    fn revoke_user_sessions(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// All users, the sessions active at `query.active` (every app), and the logins (not
    /// sessions: a refresh is no login) since each window's start.
    fn stats(&self, query: StatsQuery) -> impl Future<Output = Result<Stats, StoreError>> + Send;
}

/// Checks operator passwords against their hashes: slow on purpose (argon2id), so an adapter
/// runs it off the async runtime.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait PasswordVerifier: Clone + Send + Sync + 'static {
    /// Whether `password` is the one `hash` was made from. A hash the verifier cannot read is
    /// no match.
    fn verify(&self, hash: &PasswordHash, password: &Password)
    -> impl Future<Output = bool> + Send;

    /// A hash that no known password matches and that costs as much to check as the
    /// configured ones: what an unknown operator name is checked against.
    fn dummy_hash(&self) -> PasswordHash;
}

/// Why an operators' query (search, stats) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Unknown operator or wrong password (the two are not told apart).
    #[error("invalid operator credentials")]
    InvalidCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an action on one user (detail, revoking its sessions) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminUserError {
    /// Unknown operator or wrong password (the two are not told apart).
    #[error("invalid operator credentials")]
    InvalidCredentials,
    /// No user has this id.
    #[error("no such user")]
    UserNotFound,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminUserError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::UserNotFound,
            other => Self::Store(other),
        }
    }
}

/// The operators' use cases. Each checks the credentials first, so none can run for a
/// request that did not authenticate.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait AdminService: Send + Sync + 'static {
    /// Users by openid (any app's) and/or nickname substring, a page at a time in id order.
    fn search_users(
        &self,
        credentials: &Credentials,
        query: UserQuery,
    ) -> impl Future<Output = Result<UserPage, AdminError>> + Send;

    /// One user, with how many of its sessions are active.
    fn user_detail(
        &self,
        credentials: &Credentials,
        user_id: UserId,
    ) -> impl Future<Output = Result<UserDetail, AdminUserError>> + Send;

    /// Ends every session of the user at once, on every instance; how many it revoked.
    fn revoke_sessions(
        &self,
        credentials: &Credentials,
        user_id: UserId,
    ) -> impl Future<Output = Result<u64, AdminUserError>> + Send;

    /// Users, active sessions, logins in the last hour and the last day.
    fn stats(
        &self,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<Stats, AdminError>> + Send;
}

/// What [`Admin`] needs from the configuration.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The operators who may sign in; none configured means nobody can.
    pub operators: Vec<OperatorAccount>,
    /// The app whose identity users are shown with (the default app).
    pub app_id: AppId,
    /// The service's idle timeout, for what counts as an active session.
    pub idle_timeout: Duration,
}

/// The operators' use cases over a directory, a password verifier and a clock.
#[derive(Debug, Clone)]
pub struct Admin<D, P, K> {
    directory: D,
    verifier: P,
    clock: K,
    operators: Arc<[OperatorAccount]>,
    app_id: AppId,
    idle_timeout: Duration,
    /// What an unknown operator name is checked against, so that it costs what a wrong
    /// password costs.
    dummy: PasswordHash,
}

impl<D, P, K> Admin<D, P, K>
where
    D: Directory,
    P: PasswordVerifier,
    K: Clock,
{
    pub fn new(directory: D, verifier: P, clock: K, config: AdminConfig) -> Self {
        let dummy = verifier.dummy_hash();
        Self {
            directory,
            verifier,
            clock,
            operators: config.operators.into(),
            app_id: config.app_id,
            idle_timeout: config.idle_timeout,
            dummy,
        }
    }

    /// Whether the credentials are a configured operator's. Exactly one verification either
    /// way: an unknown name is checked against the dummy hash (and refused whatever it says).
    async fn authenticate(&self, credentials: &Credentials) -> bool {
        let account = self
            .operators
            .iter()
            .find(|o| o.name.as_str() == credentials.name);
        let hash = account.map_or(&self.dummy, |a| &a.password_hash);
        let matches = self.verifier.verify(hash, &credentials.password).await;
        account.is_some() && matches
    }

    fn active_at(&self, now: DateTime<Utc>) -> ActiveAt {
        ActiveAt {
            now,
            seen_after: now - self.idle_timeout,
        }
    }
}

impl<D, P, K> AdminService for Admin<D, P, K>
where
    D: Directory,
    P: PasswordVerifier,
    K: Clock,
{
    async fn search_users(
        &self,
        credentials: &Credentials,
        query: UserQuery,
    ) -> Result<UserPage, AdminError> {
        if !self.authenticate(credentials).await {
            return Err(AdminError::InvalidCredentials);
        }
        let limit = query.limit.get() as usize;
        // One more than the page: whether it comes back says whether there is a next page.
        let mut users = self
            .directory
            .search_users(UserSearch {
                app_id: self.app_id.clone(),
                open_id: query.open_id,
                nick_name: query.nick_name,
                after: query.after,
                limit: query.limit.get() + 1,
            })
            .await?;
        let next = if users.len() > limit {
            users.truncate(limit);
            users.last().map(|u| u.id)
        } else {
            None
        };
        Ok(UserPage { users, next })
    }

    async fn user_detail(
        &self,
        credentials: &Credentials,
        user_id: UserId,
    ) -> Result<UserDetail, AdminUserError> {
        if !self.authenticate(credentials).await {
            return Err(AdminUserError::InvalidCredentials);
        }
        let active = self.active_at(self.clock.now());
        self.directory
            .user_detail(&self.app_id, user_id, active)
            .await?
            .ok_or(AdminUserError::UserNotFound)
    }

    async fn revoke_sessions(
        &self,
        credentials: &Credentials,
        user_id: UserId,
    ) -> Result<u64, AdminUserError> {
        if !self.authenticate(credentials).await {
            return Err(AdminUserError::InvalidCredentials);
        }
        Ok(self
            .directory
            .revoke_user_sessions(user_id, self.clock.now())
            .await?)
    }

    async fn stats(&self, credentials: &Credentials) -> Result<Stats, AdminError> {
        if !self.authenticate(credentials).await {
            return Err(AdminError::InvalidCredentials);
        }
        let now = self.clock.now();
        Ok(self
            .directory
            .stats(StatsQuery {
                active: self.active_at(now),
                hour_from: now - Duration::hours(1),
                day_from: now - LOGIN_EVENTS_KEPT,
            })
            .await?)
    }
}

// As for the ports in `ports.rs`: a clone of a mock is a fresh mock.
#[cfg(feature = "mocks")]
mod mock_clone {
    use super::*;

    impl Clone for MockDirectory {
        fn clone(&self) -> Self {
            Self::new()
        }
    }

    impl Clone for MockPasswordVerifier {
        fn clone(&self) -> Self {
            Self::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names_are_basic_user_ids() {
        assert!(OperatorName::parse("alice").is_ok());
        assert!(OperatorName::parse("ops.team-1@corp").is_ok());
        assert!(OperatorName::parse("").is_err());
        assert!(OperatorName::parse("a:b").is_err());
        assert!(OperatorName::parse("a b").is_err());
        assert!(OperatorName::parse("名").is_err());
        assert!(OperatorName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn page_limits_and_nickname_queries_are_bounded() {
        assert_eq!(PageLimit::default().get(), 20);
        assert!(PageLimit::parse(0).is_err());
        assert_eq!(PageLimit::parse(100).map(PageLimit::get), Ok(100));
        assert!(PageLimit::parse(101).is_err());
        assert_eq!(
            NickNameQuery::parse("  小明 ").map(|q| q.0),
            Ok("小明".into())
        );
        assert!(NickNameQuery::parse("  ").is_err());
        assert!(NickNameQuery::parse("a\u{0}").is_err());
        assert!(NickNameQuery::parse(&"字".repeat(65)).is_err());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let p = Password::new("hunter2-secret".into());
        assert!(!format!("{p:?}").contains("hunter2"));
        let c = Credentials {
            name: "alice".into(),
            password: p,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let h = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        assert!(!format!("{h:?}").contains("argon2id"));
    }
}
