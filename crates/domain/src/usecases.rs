//! The inbound port: the use cases as one trait, which [`Service`](crate::Service) implements
//! and the HTTP adapter calls (hexarch's `BlogService`). The HTTP adapter knows this trait and
//! the types here, nothing of the outbound adapters; its tests mock this trait.
//!
//! Each use case has one exhaustive error enum.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::model::{
    AvatarId, AvatarImage, EncryptedData, InvalidValue, LoginCode, PhoneCode, ProfileUpdate,
    Session, Token, User,
};
use crate::ports::{AccessTokenError, CipherError, StoreError, StoredAvatar, WeChatError};
use crate::state::{ProfileStatus, SessionTransitionError};

/// The use cases of wxlogin.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait LoginService: Send + Sync + 'static {
    /// The classic login: exchange the code, find or create the user, open a session.
    fn login(
        &self,
        code: &LoginCode,
    ) -> impl Future<Output = Result<LoginOutcome, LoginError>> + Send;

    /// Resolves a bearer token to its active session and user.
    fn authenticate(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Authenticated, AuthError>> + Send;

    /// `updateUserInfo`: decrypts the profile with the session's key (or a fresh code's key),
    /// checks the watermark and the optional signature, and stores the profile.
    fn update_user_info(
        &self,
        token: &str,
        request: EncryptedProfile,
    ) -> impl Future<Output = Result<ProfileOutcome, UpdateUserInfoError>> + Send;

    /// Plain profile fields (the avatar/nickname filling widgets): fields given replace
    /// stored ones; WeChat's placeholder nickname and avatar never overwrite anything.
    fn update_profile(
        &self,
        token: &str,
        update: ProfileUpdate,
    ) -> impl Future<Output = Result<ProfileOutcome, UpdateProfileError>> + Send;

    /// Records the user's phone number: from a `getPhoneNumber` button's code (exchanged with
    /// WeChat under the app's shared access token) or from legacy encrypted data.
    fn bind_phone(
        &self,
        token: &str,
        request: PhoneRequest,
    ) -> impl Future<Output = Result<ProfileOutcome, PhoneError>> + Send;

    /// Keeps an uploaded avatar (`chooseAvatar`'s temporary file, sent by `wx.uploadFile`) and
    /// sets the user's `avatarUrl` to where it is served: `{url_base}/avatars/{id}`. It
    /// replaces the user's earlier upload.
    fn upload_avatar(
        &self,
        token: &str,
        image: AvatarImage,
        url_base: &str,
    ) -> impl Future<Output = Result<ProfileOutcome, UploadAvatarError>> + Send;

    /// An uploaded avatar, to serve: anyone may fetch it (a mini-program's `<image>` sends no
    /// token), and it is gone once its user replaced it or erased the account.
    fn avatar(
        &self,
        id: AvatarId,
    ) -> impl Future<Output = Result<StoredAvatar, AvatarError>> + Send;

    /// Rotates the token: a new token for the same session data, and the old one stops working
    /// at once, on every instance.
    fn refresh(&self, token: &str) -> impl Future<Output = Result<Refreshed, AuthError>> + Send;

    /// Logout: revokes the token's session, so the token stops working everywhere at once.
    fn logout(&self, token: &str) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Erases the token's user (PIPL's right to erasure): user, identities, sessions, phone
    /// number. A later login of the same openid creates a new user.
    fn erase(&self, token: &str) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Deletes the sessions that have ended (revoked, expired or idle), with their session
    /// keys; returns how many. Run periodically by the server.
    fn purge_ended_sessions(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Whether the service can serve requests (the database answers).
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The bearer token, shown to the client once.
    pub token: Token,
    pub expires_at: DateTime<Utc>,
    pub is_new_user: bool,
    pub user: User,
    pub status: ProfileStatus,
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    WeChat(#[from] WeChatError),
    /// The write after the code's exchange failed: the code is spent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store was known to be down before the exchange, which was not attempted: the code
    /// is still good.
    #[error("store not available: {0}")]
    Unavailable(StoreError),
    /// An invariant broke (the store bound another openid); details are for logs.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// A request authenticated by its bearer token: an active session and its user.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: Session,
    pub user: User,
    pub status: ProfileStatus,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown, malformed or revoked token.
    #[error("invalid token")]
    InvalidToken,
    /// The session's lifetime is over; the client must log in again.
    #[error("token expired")]
    TokenExpired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SessionTransitionError> for AuthError {
    fn from(e: SessionTransitionError) -> Self {
        match e {
            SessionTransitionError::Expired => Self::TokenExpired,
            // A revoked token is as good as one we never issued.
            SessionTransitionError::Revoked => Self::InvalidToken,
        }
    }
}

/// `updateUserInfo`: encrypted profile data plus what may come with it.
#[derive(Debug, Clone)]
pub struct EncryptedProfile {
    pub data: EncryptedData,
    /// `rawData` and `signature` from `getUserInfo`, checked when present (both or neither).
    pub raw_data: Option<String>,
    pub signature: Option<String>,
    /// A fresh `wx.login` code: exchanged first, and its session key used to decrypt.
    pub code: Option<LoginCode>,
}

/// A user after a profile change, with the profile status the change led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOutcome {
    pub user: User,
    pub status: ProfileStatus,
}

/// Why an encrypted profile update failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateUserInfoError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request is malformed in a way the HTTP layer could not see.
    #[error("invalid request: {0}")]
    InvalidRequest(InvalidValue),
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// Exchanging the fresh code failed.
    #[error(transparent)]
    WeChat(#[from] WeChatError),
    /// The fresh code belongs to a different WeChat user than the token.
    #[error("the code belongs to another user")]
    CodeForAnotherUser,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An invariant broke (the store updated another user); details are for logs.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// Why a plain profile update failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateProfileError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An invariant broke (the store updated another user); details are for logs.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// Why an avatar could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadAvatarError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `url_base` and the id do not make a URL the profile accepts (a request whose `Host`
    /// makes no URL; a configured base is checked at start).
    #[error("the avatar URL is not valid: {0}")]
    InvalidUrl(String),
    /// The image is larger than the server accepts (the HTTP adapter's limit, in bytes).
    #[error("the image is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// An invariant broke (the store updated another user); details are for logs.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// Why an avatar cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvatarError {
    /// No such avatar: never uploaded, replaced since, or its user erased.
    #[error("no such avatar")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A rotated token.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new bearer token, shown to the client once.
    pub token: Token,
    pub expires_at: DateTime<Utc>,
}

/// What the phone-number button gave the client.
#[derive(Debug, Clone)]
pub enum PhoneRequest {
    /// The `getPhoneNumber` button's code (base library 2.21.2+), exchanged through
    /// `wxa/business/getuserphonenumber`.
    Code(PhoneCode),
    /// Legacy encrypted phone data, decrypted like a profile (with an optional fresh
    /// `wx.login` code whose session key decrypts it).
    Encrypted {
        data: EncryptedData,
        code: Option<LoginCode>,
    },
}

/// Why a phone number could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// WeChat does not know the code as a phone code (40029): often a `wx.login` code sent
    /// here by mistake.
    #[error("not a getPhoneNumber code")]
    InvalidPhoneCode,
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// The WeChat call failed (after one retry with a fresh access token if it was rejected).
    #[error(transparent)]
    WeChat(#[from] WeChatError),
    /// The fresh `wx.login` code belongs to another WeChat user than the token.
    #[error("the code belongs to another user")]
    CodeForAnotherUser,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// WeChat gave the number for a code, which is now spent, but storing it failed: the user
    /// must tap the button again (or the client call `wx.login` again) for a new code.
    #[error("the number could not be recorded: {0}")]
    NotRecorded(StoreError),
    /// An invariant broke; details are for logs.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl From<AccessTokenError> for PhoneError {
    fn from(e: AccessTokenError) -> Self {
        match e {
            AccessTokenError::Store(s) => Self::Store(s),
            AccessTokenError::WeChat(w) => Self::WeChat(w),
        }
    }
}
