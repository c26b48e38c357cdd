//! The ports: what the domain needs from the outside world. Adapters implement them; the
//! service is generic over them. Async methods return `impl Future + Send` (no `async_trait`).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Duration, SubsecRound as _, Utc};

pub use crate::model::CodeSession;
use crate::model::{
    AccessToken, AppId, AvatarId, AvatarImage, AvatarUrl, DecryptedUserInfo, EncryptedData,
    ImageKind, InvalidValue, IssuedAccessToken, LoginCode, OpenId, PhoneCode, PhoneInfo,
    PhoneNumber, ProfileUpdate, Session, SessionId, SessionKey, Token, TokenDigest, UnionId, User,
    UserId,
};

/// Storage failures the domain distinguishes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy right now (pool timeout, connection refused).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The row the operation needs does not exist (any more).
    #[error("not found")]
    NotFound,
    /// Anything else; the text is for logs only.
    #[error("unexpected store error: {0}")]
    Unexpected(String),
}

/// Everything one login writes, in one transaction: find or create the user by
/// `(app_id, open_id)`, record the unionid if new, and insert the session.
#[derive(Debug, Clone)]
pub struct NewLogin {
    pub app_id: AppId,
    pub open_id: OpenId,
    pub union_id: Option<UnionId>,
    /// The id to use if the user has to be created.
    pub new_user_id: UserId,
    pub session_id: SessionId,
    pub token_digest: TokenDigest,
    pub session_key: SessionKey,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The result of [`UserStore::login`].
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub user: User,
    pub is_new_user: bool,
}

/// A session found by its token digest, with its user.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session: Session,
    pub user: User,
}

/// One profile change, in one transaction: update the user's profile (and unionid if it was
/// unknown), and optionally replace the session's key with a fresher one.
#[derive(Debug, Clone)]
pub struct ProfileChange {
    pub app_id: AppId,
    pub user_id: UserId,
    pub session_id: SessionId,
    pub profile: ProfileUpdate,
    pub union_id: Option<UnionId>,
    pub rotated_session_key: Option<SessionKey>,
    pub now: DateTime<Utc>,
}

/// A refresh, in one transaction: the old session is revoked at `now` and a new one, of the
/// same user and app and with the same session key, is inserted with a new token.
#[derive(Debug, Clone)]
pub struct SessionRefresh {
    pub old_session_id: SessionId,
    pub new_session_id: SessionId,
    pub token_digest: TokenDigest,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What counts as ended for [`UserStore::purge_sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeBefore {
    /// Sessions revoked, or whose absolute lifetime ended, at or before this instant.
    pub now: DateTime<Utc>,
    /// Sessions last seen before this instant (the idle timeout ago).
    pub last_seen: DateTime<Utc>,
}

/// A phone number to record for a user.
#[derive(Debug, Clone)]
pub struct PhoneChange {
    pub app_id: AppId,
    pub user_id: UserId,
    pub phone_number: PhoneNumber,
    pub now: DateTime<Utc>,
}

/// An uploaded avatar to keep for a user, in place of any it uploaded before, with the URL the
/// profile's `avatarUrl` then points at.
#[derive(Debug, Clone)]
pub struct AvatarChange {
    pub app_id: AppId,
    pub user_id: UserId,
    pub avatar_id: AvatarId,
    pub image: AvatarImage,
    pub url: AvatarUrl,
    pub now: DateTime<Utc>,
}

/// An avatar as the store gives it back to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAvatar {
    pub kind: ImageKind,
    pub bytes: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// An access token as the store shares it between instances: the token, when it expires, and
/// when it was fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAccessToken {
    pub token: AccessToken,
    pub expires_at: DateTime<Utc>,
    /// When WeChat handed it out (the fetching instance's clock, read before the call).
    pub fetched_at: DateTime<Utc>,
}

impl StoredAccessToken {
    /// Not expired at `now` (though perhaps inside the refresh margin).
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }

    /// Whether it does for `need` without a fetch: it stays valid past the margin, or it is
    /// still valid and was fetched within the refetch interval.
    pub fn will_do(&self, need: &AccessTokenNeed) -> bool {
        self.expires_at > need.fresh_until
            || (self.is_valid_at(need.now) && self.fetched_at > need.fetched_after)
    }
}

/// What a caller of [`UserStore::access_token`] needs of the token, on the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessTokenNeed {
    pub now: DateTime<Utc>,
    /// A token valid past this instant will do: tokens are renewed a margin before they expire.
    pub fresh_until: DateTime<Utc>,
    /// So will a token still valid at `now` that was fetched after this instant.
    /// `stable_token` hands out the current token with what is left of its life, so inside the
    /// margin a fetch brings the same token back: it is asked again at most once per interval,
    /// never on every call.
    pub fetched_after: DateTime<Utc>,
    /// How long a caller that fetches holds the app's lease: longer than a fetch can take.
    /// Callers that find the lease taken and no valid token wait at most this long for the
    /// holder's token, and take an expired lease over.
    pub lease: Duration,
}

/// Why the shared access token could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    WeChat(#[from] WeChatError),
}

/// How [`UserStore::access_token`] fetches a new token from WeChat when the stored one will not
/// do: `stable_token`, with the expiry computed from its `expires_in`.
pub type FetchAccessToken = Box<
    dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<StoredAccessToken, WeChatError>> + Send>>
        + Send,
>;

/// Users, WeChat identities and sessions. Each method is atomic.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait UserStore: Clone + Send + Sync + 'static {
    /// Finds the user by `(app_id, open_id)` or creates it, and inserts the session.
    /// Concurrent calls for one new openid create exactly one user.
    fn login(
        &self,
        login: NewLogin,
    ) -> impl Future<Output = Result<LoginRecord, StoreError>> + Send;

    /// The session with this token digest (whatever its state) and its user, as seen by
    /// `app_id`.
    fn find_session(
        &self,
        app_id: &AppId,
        digest: &TokenDigest,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;

    /// Applies a profile change and returns the updated user. `NotFound` if the user is gone.
    fn update_profile(
        &self,
        change: ProfileChange,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    /// Replaces a session's session key with a fresher one from WeChat (a fresh code was
    /// exchanged, but what came with it could not be used). `NotFound` if the session is gone.
    fn rotate_session_key(
        &self,
        session_id: SessionId,
        key: SessionKey,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes a session at `now` (logout). Revoking twice keeps the first time; `NotFound` if
    /// the session does not exist.
    fn revoke_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rotates a session's token (see [`SessionRefresh`]). `NotFound` if the old session does
    /// not exist or is already revoked (a concurrent refresh or logout won): exactly one of
    /// two racing refreshes of one token succeeds.
    fn refresh_session(
        &self,
        refresh: SessionRefresh,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that the session was used at `now` (only ever moves `last_seen_at` forward).
    /// A session gone meanwhile is not an error.
    fn touch_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records the user's phone number and returns the updated user (as seen by `app_id`).
    /// `NotFound` if the user is gone.
    fn set_phone_number(
        &self,
        change: PhoneChange,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    /// Keeps an uploaded avatar (deleting the user's earlier uploads, whose URLs then stop
    /// working) and points the user's `avatar_url` at it, in one transaction; returns the
    /// updated user (as seen by `app_id`). `NotFound` if the user is gone.
    fn set_avatar(
        &self,
        change: AvatarChange,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    /// An uploaded avatar, while its user has it.
    fn avatar(
        &self,
        id: AvatarId,
    ) -> impl Future<Output = Result<Option<StoredAvatar>, StoreError>> + Send;

    /// Erases the user with everything that belongs to it: identities, sessions (and their
    /// session keys), phone number, profile, uploaded avatars. `NotFound` if there is no such
    /// user.
    fn erase_user(&self, user_id: UserId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes every session that has ended (revoked, expired or idle, see [`PurgeBefore`])
    /// and returns how many; an ended session's key goes with it.
    fn purge_sessions(
        &self,
        before: PurgeBefore,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The access token of `app_id` shared by every instance: the stored one if it
    /// [will do](StoredAccessToken::will_do) for `need`, without calling `fetch`. Otherwise one
    /// caller at a time fetches, under the app's lease: it takes the lease (free or expired) in
    /// one conditional statement, runs `fetch` outside any transaction, and stores the token
    /// while releasing the lease (a failed fetch releases it and stores nothing; a holder whose
    /// lease was taken over meanwhile stores nothing but still answers with its token). A caller
    /// that finds the lease taken answers with the stored token if it is still valid, without
    /// waiting; else it polls for the holder's token, for at most the lease's lifetime, and
    /// takes the lease over once it has expired. No statement waits for a fetch, so every
    /// other write goes on meanwhile.
    fn access_token(
        &self,
        app_id: &AppId,
        need: AccessTokenNeed,
        fetch: FetchAccessToken,
    ) -> impl Future<Output = Result<StoredAccessToken, AccessTokenError>> + Send;

    /// Forgets the stored access token of `app_id` if it is `token` (WeChat rejected it); a
    /// newer token another instance stored meanwhile stays.
    fn forget_access_token(
        &self,
        app_id: &AppId,
        token: &AccessToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks that the database answers (for `/readyz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Says at once, without IO, whether the store is known to be unable to take work:
    /// [`StoreError::Unavailable`] while it has not reached its database yet (a server that
    /// started before its database). A login checks it before spending its one-use code with
    /// WeChat. `Ok` promises nothing: the database may still fail the next call.
    fn available(&self) -> Result<(), StoreError>;
}

/// WeChat failures, each mapped from an `errcode` or a transport failure. Texts never hold
/// the app secret or a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeChatError {
    /// 40029: the code is invalid (or expired, or belongs to another app).
    #[error("invalid code")]
    InvalidCode,
    /// 40163: the code was already used.
    #[error("code already used")]
    CodeUsed,
    /// 45011: WeChat's per-user frequency limit.
    #[error("rate limited by WeChat")]
    RateLimited,
    /// 40226: WeChat blocks this high-risk user.
    #[error("risky user")]
    RiskyUser,
    /// -1, HTTP 5xx, timeouts, refused connections: try again later.
    #[error("WeChat unavailable: {0}")]
    Unavailable(String),
    /// 40001, 42001, 40014: the access token is not the latest, has expired or is malformed;
    /// fetch a new one (once) and try again.
    #[error("access token rejected: {0}")]
    AccessTokenRejected(String),
    /// Anything we cannot make sense of, including configuration errors (40013, 40125).
    #[error("unexpected WeChat answer: {0}")]
    Unexpected(String),
}

/// WeChat's server API, for one mini-program.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait WeChat: Clone + Send + Sync + 'static {
    /// The app id this client speaks for (the watermark must carry it).
    fn app_id(&self) -> &AppId;

    /// Exchanges a `wx.login` code. Never retried: codes are single use.
    fn code_to_session(
        &self,
        code: &LoginCode,
    ) -> impl Future<Output = Result<CodeSession, WeChatError>> + Send;

    /// `POST cgi-bin/stable_token` in normal mode (`force_refresh: false`): the current access
    /// token with its remaining lifetime, without invalidating it for anyone else.
    fn stable_access_token(
        &self,
    ) -> impl Future<Output = Result<IssuedAccessToken, WeChatError>> + Send;

    /// `POST wxa/business/getuserphonenumber`: the phone number behind a `getPhoneNumber`
    /// code, its watermark checked against our app id (a foreign watermark is `Unexpected`).
    /// A code that is not a phone code (a `wx.login` code) answers `InvalidCode`.
    fn phone_number(
        &self,
        access_token: &AccessToken,
        code: &PhoneCode,
    ) -> impl Future<Output = Result<PhoneInfo, WeChatError>> + Send;

    /// `GET wxa/checksession`: whether `session_key` is still the user's current key
    /// (`Ok(false)` for WeChat's 87009, invalid signature).
    fn check_session(
        &self,
        access_token: &AccessToken,
        open_id: &OpenId,
        session_key: &SessionKey,
    ) -> impl Future<Output = Result<bool, WeChatError>> + Send;
}

/// Why encrypted data or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// Malformed input detectable before decryption (bad base64, IV or key not 16 bytes).
    #[error("invalid input: {0}")]
    InvalidInput(InvalidValue),
    /// Every failure after decoding: one uniform error (no padding oracle).
    #[error("decryption failed")]
    DecryptFailed,
    /// `sha1(rawData + session_key)` did not match the signature.
    #[error("signature mismatch")]
    SignatureMismatch,
}

/// WeChat's user-data encryption (AES-128-CBC, PKCS#7, watermark) and `rawData` signatures.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait UserDataCipher: Clone + Send + Sync + 'static {
    /// Decrypts user info and checks that the watermark names `app_id`.
    fn decrypt_user_info(
        &self,
        key: &SessionKey,
        app_id: &AppId,
        data: &EncryptedData,
    ) -> Result<DecryptedUserInfo, CipherError>;

    /// Decrypts legacy `getPhoneNumber` data (`phoneNumber`, `purePhoneNumber`,
    /// `countryCode`) and checks that the watermark names `app_id`.
    fn decrypt_phone_number(
        &self,
        key: &SessionKey,
        app_id: &AppId,
        data: &EncryptedData,
    ) -> Result<PhoneInfo, CipherError>;

    /// Checks `signature == hex(sha1(raw_data + session_key))` in constant time.
    fn verify_signature(
        &self,
        key: &SessionKey,
        raw_data: &str,
        signature: &str,
    ) -> Result<(), CipherError>;
}

/// Mints bearer tokens and digests them.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait TokenMinter: Clone + Send + Sync + 'static {
    /// A fresh token with 256 bits from the OS random source.
    fn mint(&self) -> Token;
    /// The digest stored in place of the token.
    fn digest(&self, token: &str) -> TokenDigest;
}

/// The time, injectable for tests.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Clone + Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Microsecond precision: what Postgres' `timestamptz` keeps, so every store returns
    /// exactly the times it was given.
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

// mockall's generated mocks are not Clone; the ports require it, so give them a Clone that
// hands out a fresh mock. Tests configure the mock they pass in, never a clone.
#[cfg(feature = "mocks")]
mod mock_clone {
    use super::*;
    macro_rules! fresh_clone {
        ($($m:ident),*) => {$(
            impl Clone for $m {
                fn clone(&self) -> Self {
                    Self::new()
                }
            }
        )*};
    }
    fresh_clone!(
        MockUserStore,
        MockWeChat,
        MockUserDataCipher,
        MockTokenMinter,
        MockClock
    );
}
