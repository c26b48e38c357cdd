//! `Service`: the use cases of [`LoginService`] over the outbound ports. It performs the IO
//! around the pure state machines in `state`: every decision about a login, a session or a
//! profile is a transition there.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::Duration;
use futures_util::future::{Either, select};

use crate::model::{AccessToken, AvatarId, AvatarImage, CodeSession, PhoneCode, PhoneInfo, User};
use crate::model::{
    AvatarUrl, Gender, InvalidValue, LoginCode, NickName, ProfileUpdate, Reason, SessionId, Token,
    UserId,
};
use crate::ports::{
    AccessTokenError, AccessTokenNeed, AvatarChange, CipherError, Clock, FetchAccessToken,
    NewLogin, PhoneChange, ProfileChange, PurgeBefore, SessionRecord, SessionRefresh, StoreError,
    StoredAccessToken, StoredAvatar, TokenMinter, UserDataCipher, UserStore, WeChat, WeChatError,
};
use crate::single_flight::SingleFlight;
use crate::state::{LoginEvent, LoginState, ProfileStatus, SessionEvent, SessionState};
use crate::usecases::{
    AuthError, Authenticated, AvatarError, EncryptedProfile, LoginError, LoginOutcome,
    LoginService, PhoneError, PhoneRequest, ProfileOutcome, Refreshed, UpdateProfileError,
    UpdateUserInfoError, UploadAvatarError,
};

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Absolute lifetime of a session from its login (or refresh).
    pub session_ttl: Duration,
    /// A session unused for this long has expired.
    pub idle_timeout: Duration,
    /// `last_seen_at` is written at most this often per session.
    pub touch_interval: Duration,
    /// The shared access token is renewed this long before it expires.
    pub access_token_margin: Duration,
    /// Inside the margin the token is asked of WeChat again at most this often:
    /// `stable_token` hands the same token back until it expires, so asking on every call
    /// would only multiply the calls.
    pub access_token_refetch_interval: Duration,
    /// How long the instance that fetches the token holds the store's lease on it: longer
    /// than a WeChat call can take (the client's timeout), short enough that the others,
    /// should it die while fetching, do not wait long before taking over.
    pub access_token_lease: Duration,
    /// Every WeChat call is given up after this long, whatever the adapter (the in-process
    /// mock has no timeout of its own): `WeChatError::Unavailable`. A little longer than the
    /// HTTP client's own total timeout, so that the client's more precise error comes first;
    /// shorter than the access-token lease.
    pub wechat_timeout: std::time::Duration,
    /// What waits out [`ServiceConfig::wechat_timeout`].
    pub timer: Timer,
}

/// What waits out the bound on every WeChat call: by default a timer on `futures-timer`'s
/// own thread, so the domain needs no runtime; a server on tokio passes tokio's timer, which
/// costs no wake-up of another thread per call ([`Timer::new`]).
#[derive(Clone)]
pub struct Timer(Arc<dyn Fn(std::time::Duration) -> Sleep + Send + Sync>);

/// A pause of [`Timer`].
pub type Sleep = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl Timer {
    /// A timer whose `sleep(d)` completes after `d`.
    pub fn new(sleep: impl Fn(std::time::Duration) -> Sleep + Send + Sync + 'static) -> Self {
        Self(Arc::new(sleep))
    }

    fn sleep(&self, d: std::time::Duration) -> Sleep {
        (self.0)(d)
    }
}

impl Default for Timer {
    fn default() -> Self {
        Self::new(|d| Box::pin(futures_timer::Delay::new(d)))
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Timer")
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::days(30),
            idle_timeout: Duration::days(7),
            touch_interval: Duration::minutes(1),
            access_token_margin: Duration::minutes(5),
            access_token_refetch_interval: Duration::minutes(1),
            access_token_lease: Duration::seconds(10),
            wechat_timeout: std::time::Duration::from_secs(6),
            timer: Timer::default(),
        }
    }
}

/// The ports the service runs on.
#[derive(Debug, Clone)]
pub struct Service<S, W, C, T, K> {
    /// Shared, like `wechat`, with the access-token fetch in flight.
    store: Arc<S>,
    /// Shared with the code exchanges in flight, which outlive the request that started them
    /// while another waits for them.
    wechat: Arc<W>,
    cipher: C,
    tokens: T,
    /// Shared with the access-token fetch in flight, which stamps the token it fetches.
    clock: Arc<K>,
    config: ServiceConfig,
    /// Code exchanges in flight: a code sent twice at once reaches WeChat once.
    exchanges: SingleFlight<Result<CodeSession, WeChatError>>,
    /// This instance's copy of the shared access token, and its one read of the store's in
    /// flight (which fetches when the stored token will not do either).
    access_token: Arc<Mutex<HeldToken>>,
    access_token_fetch: SingleFlight<Result<StoredAccessToken, AccessTokenError>>,
}

/// An instance's copy of the shared access token.
#[derive(Debug, Default)]
struct HeldToken {
    copy: Option<StoredAccessToken>,
    /// WeChat rejected the copy: it is kept only to order later copies against it.
    rejected: bool,
    /// How many rejections this instance has seen. The read of the store that follows a
    /// rejection never joins one begun before it, which could bring the rejected token back.
    rejections: u64,
}

impl HeldToken {
    fn usable(&self, need: &AccessTokenNeed) -> Option<StoredAccessToken> {
        self.copy
            .as_ref()
            .filter(|copy| !self.rejected && copy.will_do(need))
            .cloned()
    }

    /// Keeps `token` unless the copy was fetched at the same time or later: a read that ends
    /// late never puts back an older token, nor the one WeChat rejected.
    fn offer(&mut self, token: &StoredAccessToken) {
        if self
            .copy
            .as_ref()
            .is_none_or(|copy| token.fetched_at > copy.fetched_at)
        {
            self.copy = Some(token.clone());
            self.rejected = false;
        }
    }

    fn reject(&mut self, token: &AccessToken) {
        if self.copy.as_ref().is_some_and(|copy| copy.token == *token) {
            self.rejected = true;
        }
        self.rejections += 1;
    }
}

impl<S, W, C, T, K> Service<S, W, C, T, K>
where
    S: UserStore,
    W: WeChat,
    C: UserDataCipher,
    T: TokenMinter,
    K: Clock,
{
    pub fn new(store: S, wechat: W, cipher: C, tokens: T, clock: K, config: ServiceConfig) -> Self {
        Self {
            store: Arc::new(store),
            wechat: Arc::new(wechat),
            cipher,
            tokens,
            clock: Arc::new(clock),
            config,
            exchanges: SingleFlight::default(),
            access_token: Arc::default(),
            access_token_fetch: SingleFlight::default(),
        }
    }

    /// The app's access token: this instance's copy while it will do, else the store's shared
    /// one, which one instance at a time renews through `stable_token` (normal mode: it never
    /// knocks another holder's token out).
    async fn access_token(&self) -> Result<StoredAccessToken, AccessTokenError> {
        let now = self.clock.now();
        let need = AccessTokenNeed {
            now,
            fresh_until: now + self.config.access_token_margin,
            fetched_after: now - self.config.access_token_refetch_interval,
            lease: self.config.access_token_lease,
        };
        let rejections = {
            let held = lock(&self.access_token);
            if let Some(token) = held.usable(&need) {
                return Ok(token);
            }
            held.rejections
        };
        let store = Arc::clone(&self.store);
        let wechat = Arc::clone(&self.wechat);
        let clock = Arc::clone(&self.clock);
        let (bound, timer) = (self.config.wechat_timeout, self.config.timer.clone());
        let token = self
            .access_token_fetch
            .run(&format!("access_token/{rejections}"), move || async move {
                let app_id = wechat.app_id().clone();
                let fetch: FetchAccessToken = Box::new(move || {
                    Box::pin(async move {
                        // Read before the call: the token is thought to expire a little early,
                        // never late.
                        let fetched_at = clock.now();
                        let issued = bounded(&timer, bound, wechat.stable_access_token()).await?;
                        Ok(StoredAccessToken {
                            token: issued.token,
                            expires_at: fetched_at + issued.expires_in,
                            fetched_at,
                        })
                    })
                });
                store.access_token(&app_id, need, fetch).await
            })
            .await?;
        lock(&self.access_token).offer(&token);
        Ok(token)
    }

    /// The phone number behind a `getPhoneNumber` code. A rejected access token (not the
    /// latest, expired) is forgotten — here and in the store, only if it is still the one that
    /// failed — and the call is made once more with a fresh one. Should WeChat hand back the
    /// very token it rejected, the answer is `Unavailable` rather than a second call bound to
    /// be rejected too.
    async fn phone_info(&self, code: &PhoneCode) -> Result<PhoneInfo, PhoneError> {
        let held = self.access_token().await?;
        match self
            .bounded(self.wechat.phone_number(&held.token, code))
            .await
        {
            Err(WeChatError::AccessTokenRejected(_)) => {
                lock(&self.access_token).reject(&held.token);
                self.store
                    .forget_access_token(self.wechat.app_id(), &held.token)
                    .await?;
                let fresh = self.access_token().await?;
                if fresh.token == held.token {
                    return Err(PhoneError::WeChat(WeChatError::Unavailable(
                        "WeChat handed back the access token it had just rejected".into(),
                    )));
                }
                self.bounded(self.wechat.phone_number(&fresh.token, code))
                    .await
                    .map_err(phone_error)
            }
            other => other.map_err(phone_error),
        }
    }

    /// The phone number behind `code` taken as a `getPhoneNumber` code; `None` when WeChat says
    /// it is no phone code (then it may be a `wx.login` code).
    async fn phone_code_first(&self, code: &LoginCode) -> Result<Option<PhoneInfo>, PhoneError> {
        let Ok(phone_code) = PhoneCode::parse(code.as_str()) else {
            return Ok(None);
        };
        match self.phone_info(&phone_code).await {
            Ok(phone) => Ok(Some(phone)),
            Err(PhoneError::InvalidPhoneCode) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Exchanges `code`, or joins the exchange of the same code already in flight. Both
    /// callers then sign in with the same WeChat session, each with a session of its own.
    async fn exchange(&self, code: &LoginCode) -> Result<CodeSession, WeChatError> {
        let wechat = Arc::clone(&self.wechat);
        let owned = code.clone();
        let (bound, timer) = (self.config.wechat_timeout, self.config.timer.clone());
        // The bound is inside the shared call: a stalled exchange ends (and leaves the single
        // flight) for every caller at once, and the next attempt starts a new call.
        self.exchanges
            .run(code.as_str(), move || async move {
                bounded(&timer, bound, wechat.code_to_session(&owned)).await
            })
            .await
    }

    /// `call`, given up after the configured WeChat timeout.
    async fn bounded<R>(
        &self,
        call: impl Future<Output = Result<R, WeChatError>>,
    ) -> Result<R, WeChatError> {
        bounded(&self.config.timer, self.config.wechat_timeout, call).await
    }

    /// The stored session of `token` and the state it is in now, whatever that state is.
    async fn session_of(&self, token: &str) -> Result<(SessionRecord, SessionState), AuthError> {
        // Anything without our prefix was never issued by us: no need to ask the database.
        if !token.starts_with(Token::PREFIX) || token.len() > 256 {
            return Err(AuthError::InvalidToken);
        }
        let digest = self.tokens.digest(token);
        let record = self
            .store
            .find_session(self.wechat.app_id(), &digest)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let state = SessionState::of(&record.session, self.clock.now(), self.config.idle_timeout);
        Ok((record, state))
    }

    /// The profile status after a profile change of the signed-in `before` to `after`.
    fn status_after(before: &User, after: &User) -> Option<ProfileStatus> {
        LoginState::signed_in(before)
            .on(LoginEvent::ProfileUpdated(after.clone()))
            .ok()
            .and_then(|state| state.profile_status())
    }
}

impl<S, W, C, T, K> LoginService for Service<S, W, C, T, K>
where
    S: UserStore,
    W: WeChat,
    C: UserDataCipher,
    T: TokenMinter,
    K: Clock,
{
    async fn login(&self, code: &LoginCode) -> Result<LoginOutcome, LoginError> {
        // A code is spent by its exchange: refuse before it while the store is known to be
        // down, so the client may retry with the same code.
        self.store.available().map_err(LoginError::Unavailable)?;
        let exchanged = self.exchange(code).await?;
        let state = LoginState::Anonymous
            .on(LoginEvent::CodeExchanged(exchanged.clone()))
            .map_err(|e| LoginError::Unexpected(e.to_string()))?;

        let token = self.tokens.mint();
        let now = self.clock.now();
        let expires_at = now + self.config.session_ttl;
        let record = self
            .store
            .login(NewLogin {
                app_id: self.wechat.app_id().clone(),
                open_id: exchanged.open_id,
                union_id: exchanged.union_id,
                new_user_id: UserId::new(),
                session_id: SessionId::new(),
                token_digest: self.tokens.digest(token.expose()),
                session_key: exchanged.session_key,
                now,
                expires_at,
            })
            .await?;

        let state = state
            .on(LoginEvent::UserBound(record.user.clone()))
            .map_err(|e| LoginError::Unexpected(e.to_string()))?;
        let profile = state
            .profile_status()
            .ok_or_else(|| LoginError::Unexpected("login did not sign in".into()))?;
        Ok(LoginOutcome {
            token,
            expires_at,
            is_new_user: record.is_new_user,
            user: record.user,
            status: profile,
        })
    }

    async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        let (record, state) = self.session_of(token).await?;
        // Only an active session may be used; expired and revoked ones are final.
        state.on(SessionEvent::Use)?;
        // The idle timeout counts from the last use, kept to the touch interval so that a
        // busy client does not write on every request.
        let now = self.clock.now();
        if now - record.session.last_seen_at >= self.config.touch_interval {
            self.store.touch_session(record.session.id, now).await?;
        }
        let status = ProfileStatus::of(&record.user);
        Ok(Authenticated {
            session: record.session,
            user: record.user,
            status,
        })
    }

    async fn update_user_info(
        &self,
        token: &str,
        request: EncryptedProfile,
    ) -> Result<ProfileOutcome, UpdateUserInfoError> {
        let auth = self.authenticate(token).await?;
        let signed = match (&request.raw_data, &request.signature) {
            (Some(raw), Some(sig)) => Some((raw.as_str(), sig.as_str())),
            (None, None) => None,
            _ => {
                return Err(UpdateUserInfoError::InvalidRequest(InvalidValue::new(
                    "rawData",
                    Reason::ComesWithSignature,
                )));
            }
        };

        let fresh_key = match &request.code {
            Some(code) => {
                let exchanged = self.exchange(code).await?;
                if exchanged.open_id != auth.user.open_id {
                    return Err(UpdateUserInfoError::CodeForAnotherUser);
                }
                Some(exchanged.session_key)
            }
            None => None,
        };
        let key = fresh_key.as_ref().unwrap_or(&auth.session.session_key);

        let checked = signed
            .map_or(Ok(()), |(raw, sig)| {
                self.cipher.verify_signature(key, raw, sig)
            })
            .and_then(|()| {
                self.cipher
                    .decrypt_user_info(key, self.wechat.app_id(), &request.data)
            })
            .and_then(|info| {
                // Data for another openid cannot have been encrypted with this user's key;
                // treat it like any other undecryptable payload.
                if info
                    .open_id
                    .as_ref()
                    .is_some_and(|o| *o != auth.user.open_id)
                {
                    Err(CipherError::DecryptFailed)
                } else {
                    Ok(info)
                }
            });
        let info = match checked {
            Ok(info) => info,
            Err(e) => {
                // The exchange already made the fresh key WeChat's only valid one for this
                // user: keep it on the session even though this payload was unusable, so the
                // next attempt without a code decrypts with the right key.
                if let Some(fresh) = fresh_key {
                    match self.store.rotate_session_key(auth.session.id, fresh).await {
                        Ok(()) => {}
                        // The session was revoked meanwhile: the token no longer works.
                        Err(StoreError::NotFound) => return Err(AuthError::InvalidToken.into()),
                        Err(other) => return Err(other.into()),
                    }
                }
                return Err(e.into());
            }
        };

        let user = self
            .store
            .update_profile(ProfileChange {
                app_id: self.wechat.app_id().clone(),
                user_id: auth.user.id,
                session_id: auth.session.id,
                profile: without_placeholders(info.profile),
                union_id: info.union_id,
                rotated_session_key: fresh_key,
                now: self.clock.now(),
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => UpdateUserInfoError::Auth(AuthError::InvalidToken),
                other => other.into(),
            })?;
        let status = Self::status_after(&auth.user, &user).ok_or_else(|| {
            UpdateUserInfoError::Unexpected("the store updated another user".into())
        })?;
        Ok(ProfileOutcome { user, status })
    }

    async fn update_profile(
        &self,
        token: &str,
        update: ProfileUpdate,
    ) -> Result<ProfileOutcome, UpdateProfileError> {
        let auth = self.authenticate(token).await?;
        let user = self
            .store
            .update_profile(ProfileChange {
                app_id: self.wechat.app_id().clone(),
                user_id: auth.user.id,
                session_id: auth.session.id,
                profile: without_placeholder_identity(update),
                union_id: None,
                rotated_session_key: None,
                now: self.clock.now(),
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => AuthError::InvalidToken,
                other => other.into(),
            })?;
        let status = Self::status_after(&auth.user, &user).ok_or_else(|| {
            UpdateProfileError::Unexpected("the store updated another user".into())
        })?;
        Ok(ProfileOutcome { user, status })
    }

    async fn bind_phone(
        &self,
        token: &str,
        request: PhoneRequest,
    ) -> Result<ProfileOutcome, PhoneError> {
        let auth = self.authenticate(token).await?;
        // Whether a code is spent once the number is had: a phone code always, a legacy
        // request's fresh wx.login code too.
        let spends_a_code = !matches!(request, PhoneRequest::Encrypted { code: None, .. });
        let phone = match request {
            PhoneRequest::Code(code) => self.phone_info(&code).await?,
            // Today's button hands the client a phone code *and* encrypted data, and clients
            // that forward `e.detail` whole send both: try the code as a phone code first. A
            // code WeChat refuses as a phone code (40029, no charge) is the legacy flow's
            // fresh `wx.login` code, which the phone API left unspent.
            PhoneRequest::Encrypted {
                code: Some(code), ..
            } if let Some(phone) = self.phone_code_first(&code).await? => phone,
            PhoneRequest::Encrypted { data, code } => {
                let fresh_key = match &code {
                    Some(code) => {
                        let exchanged = self.exchange(code).await?;
                        if exchanged.open_id != auth.user.open_id {
                            return Err(PhoneError::CodeForAnotherUser);
                        }
                        // WeChat's only valid key for the user now: keep it on the session
                        // whatever the data turns out to be.
                        self.store
                            .rotate_session_key(auth.session.id, exchanged.session_key.clone())
                            .await
                            .map_err(|e| match e {
                                StoreError::NotFound => PhoneError::Auth(AuthError::InvalidToken),
                                other => other.into(),
                            })?;
                        Some(exchanged.session_key)
                    }
                    None => None,
                };
                let key = fresh_key.as_ref().unwrap_or(&auth.session.session_key);
                self.cipher
                    .decrypt_phone_number(key, self.wechat.app_id(), &data)?
            }
        };
        let user = self
            .store
            .set_phone_number(PhoneChange {
                app_id: self.wechat.app_id().clone(),
                user_id: auth.user.id,
                phone_number: phone.phone_number,
                now: self.clock.now(),
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => PhoneError::Auth(AuthError::InvalidToken),
                other if spends_a_code => PhoneError::NotRecorded(other),
                other => other.into(),
            })?;
        let status = Self::status_after(&auth.user, &user)
            .ok_or_else(|| PhoneError::Unexpected("the store updated another user".into()))?;
        Ok(ProfileOutcome { user, status })
    }

    async fn upload_avatar(
        &self,
        token: &str,
        image: AvatarImage,
        url_base: &str,
    ) -> Result<ProfileOutcome, UploadAvatarError> {
        let auth = self.authenticate(token).await?;
        let avatar_id = AvatarId::new();
        let url = format!("{}/avatars/{avatar_id}", url_base.trim_end_matches('/'));
        let url =
            AvatarUrl::parse(&url).map_err(|e| UploadAvatarError::InvalidUrl(e.to_string()))?;
        let user = self
            .store
            .set_avatar(AvatarChange {
                app_id: self.wechat.app_id().clone(),
                user_id: auth.user.id,
                avatar_id,
                image,
                url,
                now: self.clock.now(),
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => AuthError::InvalidToken,
                other => other.into(),
            })?;
        let status = Self::status_after(&auth.user, &user).ok_or_else(|| {
            UploadAvatarError::Unexpected("the store updated another user".into())
        })?;
        Ok(ProfileOutcome { user, status })
    }

    async fn avatar(&self, id: AvatarId) -> Result<StoredAvatar, AvatarError> {
        self.store.avatar(id).await?.ok_or(AvatarError::NotFound)
    }

    async fn refresh(&self, token: &str) -> Result<Refreshed, AuthError> {
        let auth = self.authenticate(token).await?;
        let token = self.tokens.mint();
        let now = self.clock.now();
        let expires_at = now + self.config.session_ttl;
        self.store
            .refresh_session(SessionRefresh {
                old_session_id: auth.session.id,
                new_session_id: SessionId::new(),
                token_digest: self.tokens.digest(token.expose()),
                now,
                expires_at,
            })
            .await
            .map_err(|e| match e {
                // A concurrent refresh or logout ended the session first.
                StoreError::NotFound => AuthError::InvalidToken,
                other => other.into(),
            })?;
        Ok(Refreshed { token, expires_at })
    }

    async fn logout(&self, token: &str) -> Result<(), AuthError> {
        let (record, state) = self.session_of(token).await?;
        state.on(SessionEvent::Revoke)?;
        match self
            .store
            .revoke_session(record.session.id, self.clock.now())
            .await
        {
            // Revoked concurrently by another request: the outcome is the same.
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn erase(&self, token: &str) -> Result<(), AuthError> {
        let auth = self.authenticate(token).await?;
        match self.store.erase_user(auth.user.id).await {
            // Erased concurrently (the same user's other session): the outcome is the same.
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn purge_ended_sessions(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        self.store
            .purge_sessions(PurgeBefore {
                now,
                last_seen: now - self.config.idle_timeout,
            })
            .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}

/// `call`, or `Unavailable` once `limit` has passed on `timer` (the call is dropped:
/// cancelled).
pub(crate) async fn bounded<T>(
    timer: &Timer,
    limit: std::time::Duration,
    call: impl Future<Output = Result<T, WeChatError>>,
) -> Result<T, WeChatError> {
    let call = std::pin::pin!(call);
    match select(call, timer.sleep(limit)).await {
        Either::Left((answer, _)) => answer,
        Either::Right(((), _)) => Err(WeChatError::Unavailable(format!(
            "timed out after {} ms",
            limit.as_millis()
        ))),
    }
}

/// A `getuserphonenumber` failure: 40029 there means the code is no phone code.
fn phone_error(e: WeChatError) -> PhoneError {
    match e {
        WeChatError::InvalidCode | WeChatError::CodeUsed => PhoneError::InvalidPhoneCode,
        other => PhoneError::WeChat(other),
    }
}

// Every update of the held token is a few assignments that cannot panic: a poisoned lock is
// still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// WeChat's anonymous nickname and grey avatar carry no information; never let them
/// overwrite what the user gave us.
fn without_placeholder_identity(mut update: ProfileUpdate) -> ProfileUpdate {
    if update
        .0
        .nick_name
        .as_ref()
        .is_some_and(NickName::is_placeholder)
    {
        update.0.nick_name = None;
    }
    if update
        .0
        .avatar_url
        .as_ref()
        .is_some_and(AvatarUrl::is_placeholder)
    {
        update.0.avatar_url = None;
    }
    update
}

/// Decrypted data is anonymised since 2021: besides the placeholders, its gender 0
/// ("unknown") carries no information, so it keeps what we have. (A plain update's 0 is the
/// user's own choice and is kept.)
fn without_placeholders(update: ProfileUpdate) -> ProfileUpdate {
    let mut update = without_placeholder_identity(update);
    if update.0.gender == Some(Gender::Unknown) {
        update.0.gender = None;
    }
    update
}
