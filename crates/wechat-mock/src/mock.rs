//! The fake's state and rules: codes, users, session keys, the access token, phone codes, and
//! failures injected per API.
//!
//! Every API call, over HTTP or in process, goes through [`MockWeChat::answer`]: the front
//! door first ([`MockWeChat::admit`]: count the call, apply the next failure injected for that
//! API), then the API's rules, written once ([`MockWeChat::jscode2session`],
//! [`MockWeChat::stable_token`], [`MockWeChat::token`], [`MockWeChat::get_user_phone_number`],
//! [`MockWeChat::checksession`]) for both the HTTP endpoint and the in-process [`WeChat`] impl,
//! so the two cannot drift apart.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::distr::{Alphanumeric, SampleString as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use wxlogin_domain::{
    AccessToken, AppId, CodeSession, IssuedAccessToken, LoginCode, OpenId, PhoneCode, PhoneInfo,
    PhoneNumber, SessionKey, UnionId, WeChat, WeChatError,
};

use crate::api::Api;
use crate::cipher;

/// How long a minted code (login or phone) can be used, as on WeChat.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(5 * 60);

/// How long an access token lives, as on WeChat (`expires_in: 7200`).
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(7200);

/// Real access tokens are 100–200 characters; what matters to a client is that it keeps the
/// whole token, so it is not short either.
const ACCESS_TOKEN_LEN: usize = 128;

/// The only `sig_method` of `checksession`.
const SIG_METHOD: &str = "hmac_sha256";

/// The longest stall [`Failure::Slow`] accepts from the control API; longer would only hang
/// test runs.
const MAX_SLOW: Duration = Duration::from_secs(600);

/// A failure to inject into the next calls of one [`Api`].
///
/// Deserializes from the control API's shape: `{"mode": "busy"}`, `{"mode": "slow",
/// "delayMs": 3000}`; modes are `busy`, `rate_limited`, `risky`, `http500`, `garbage`,
/// `truncated`, `slow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "FailureSpec")]
pub enum Failure {
    /// errcode -1, "system error".
    Busy,
    /// errcode 45011, the per-user frequency limit.
    RateLimited,
    /// errcode 40226, a high-risk user.
    Risky,
    /// HTTP 500 with an HTML body, as a gateway in front of WeChat answers.
    Http500,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// HTTP 200, `application/json`, whose (complete) body is a JSON object cut off in the
    /// middle, as a broken gateway may send: malformed JSON, not a transport error.
    Truncated,
    /// Stall this long, then answer normally: the code *is* consumed after the stall, as a
    /// slow WeChat would, unless the caller hung up first (the answer is then never computed).
    Slow(Duration),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureMode {
    Busy,
    RateLimited,
    Risky,
    Http500,
    Garbage,
    Truncated,
    Slow,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailureSpec {
    mode: FailureMode,
    delay_ms: Option<u64>,
}

impl TryFrom<FailureSpec> for Failure {
    type Error = String;

    fn try_from(spec: FailureSpec) -> Result<Self, String> {
        Self::from_parts(spec.mode, spec.delay_ms)
    }
}

impl Failure {
    pub(crate) fn from_parts(mode: FailureMode, delay_ms: Option<u64>) -> Result<Self, String> {
        let failure = match mode {
            FailureMode::Busy => Self::Busy,
            FailureMode::RateLimited => Self::RateLimited,
            FailureMode::Risky => Self::Risky,
            FailureMode::Http500 => Self::Http500,
            FailureMode::Garbage => Self::Garbage,
            FailureMode::Truncated => Self::Truncated,
            FailureMode::Slow => {
                let ms = delay_ms.ok_or("mode slow needs delayMs")?;
                let delay = Duration::from_millis(ms);
                if delay > MAX_SLOW {
                    return Err(format!("delayMs must be at most {}", MAX_SLOW.as_millis()));
                }
                Self::Slow(delay)
            }
        };
        if delay_ms.is_some() && !matches!(failure, Self::Slow(_)) {
            return Err("delayMs only applies to mode slow".into());
        }
        Ok(failure)
    }
}

/// User data encrypted as WeChat hands it to a mini-program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedPayload {
    pub encrypted_data: String,
    pub iv: String,
}

/// `countryCode` as the mock writes it: WeChat's documentation shows a string (`"86"`), its
/// sample a number (`86`), and clients must take both. Serializes untagged, as either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CountryCode {
    Text(String),
    Number(u64),
}

impl Default for CountryCode {
    /// `"86"`, mainland China, as a string.
    fn default() -> Self {
        Self::Text("86".to_owned())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

/// The phone number behind a phone code, exactly as `getuserphonenumber` will report it (the
/// mock checks nothing, so a test can hand out a malformed one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// `phoneNumber`: WeChat adds `+{countryCode}` for numbers outside mainland China.
    pub phone_number: String,
    /// `purePhoneNumber`: without the country code.
    pub pure_phone_number: String,
    pub country_code: CountryCode,
}

impl Phone {
    /// `phone_number` in `country_code`; the pure number is `phone_number` without a leading
    /// `+{country_code}`.
    pub fn new(phone_number: &str, country_code: CountryCode) -> Self {
        let prefix = format!("+{country_code}");
        let pure = phone_number.strip_prefix(&prefix).unwrap_or(phone_number);
        Self {
            phone_number: phone_number.to_owned(),
            pure_phone_number: pure.trim_start().to_owned(),
            country_code,
        }
    }
}

/// Why the mock refused a control request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MockError {
    /// The user never logged in, so WeChat would have no session key for them.
    #[error("user {0} has never logged in")]
    UnknownUser(String),
    /// User info and phone data must be JSON objects.
    #[error("the data to encrypt must be a JSON object")]
    NotAnObject,
}

/// An `errcode` answer, the way every API refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) errcode: i64,
    pub(crate) errmsg: &'static str,
}

const fn refusal(errcode: i64, errmsg: &'static str) -> Refusal {
    Refusal { errcode, errmsg }
}

/// What one call answers, before it is rendered as HTTP or mapped to an error: the API's own
/// success value, or one of the failures every API shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer<T> {
    Ok(T),
    Refused(Refusal),
    Http500,
    Garbage,
    Truncated,
}

/// `jscode2session`'s success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) open_id: String,
    pub(crate) union_id: Option<String>,
    pub(crate) session_key: String,
}

/// `stable_token`'s and `token`'s success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuedToken {
    pub(crate) access_token: String,
    /// Whole seconds, rounded up, so a token still valid never says 0.
    pub(crate) expires_in: u64,
}

/// `getuserphonenumber`'s success: the minted number and its watermark.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PhoneAnswer {
    pub(crate) phone: Phone,
    pub(crate) watermark: Value,
}

/// Who is calling an API that takes the app's credentials: in-process callers are trusted,
/// HTTP callers send them.
pub(crate) enum Caller<'a> {
    InProcess,
    Http {
        appid: Option<&'a str>,
        secret: Option<&'a str>,
        grant_type: Option<&'a str>,
    },
}

/// Single-use codes by value, each valid until its expiry. Expired codes are dropped in mint
/// order, so pruning needs no full scan.
struct Codes<E> {
    live: HashMap<String, (E, Instant)>,
    expiry: VecDeque<(Instant, String)>,
}

impl<E> Codes<E> {
    fn new() -> Self {
        Self {
            live: HashMap::new(),
            expiry: VecDeque::new(),
        }
    }

    /// A fresh random code for `entry`, valid for `ttl` from `now`.
    fn mint(&mut self, now: Instant, ttl: Duration, entry: E) -> String {
        self.prune(now);
        let code = loop {
            // Real codes are 32 alphanumeric characters; collisions are astronomically
            // unlikely, but a duplicate would silently hand one user another's code.
            let code = Alphanumeric.sample_string(&mut rand::rng(), 32);
            if !self.live.contains_key(&code) {
                break code;
            }
        };
        let expires_at = now + ttl;
        self.live.insert(code.clone(), (entry, expires_at));
        self.expiry.push_back((expires_at, code.clone()));
        code
    }

    /// The entry of a code that was minted and has not expired.
    fn get_mut(&mut self, code: &str, now: Instant) -> Option<&mut E> {
        self.prune(now);
        // The TTL may have changed between mints, so the queue is not strictly ordered:
        // check this code's own expiry too.
        match self.live.get_mut(code) {
            Some((entry, expires_at)) if *expires_at > now => Some(entry),
            _ => None,
        }
    }

    /// Takes a live code out for good.
    fn take(&mut self, code: &str, now: Instant) -> Option<E> {
        self.get_mut(code, now)?;
        self.live.remove(code).map(|(entry, _)| entry)
    }

    fn prune(&mut self, now: Instant) {
        while let Some((expires_at, _)) = self.expiry.front() {
            if *expires_at > now {
                break;
            }
            if let Some((_, code)) = self.expiry.pop_front() {
                self.live.remove(&code);
            }
        }
    }
}

struct CodeEntry {
    open_id: String,
    union_id: Option<String>,
    /// The session key this login made current; the exchange hands it out.
    session_key: [u8; 16],
    used: bool,
}

struct PhoneCodeEntry {
    open_id: String,
    phone: Phone,
}

struct UserEntry {
    session_key: [u8; 16],
    union_id: Option<String>,
}

struct CurrentToken {
    token: String,
    expires_at: Instant,
}

struct State {
    code_ttl: Duration,
    // Used login codes stay until they expire, so a replay answers 40163, not 40029.
    codes: Codes<CodeEntry>,
    // A phone code is taken out when used: a second use is as unknown as any other code.
    phone_codes: Codes<PhoneCodeEntry>,
    users: HashMap<String, UserEntry>,
    access_token_ttl: Duration,
    /// The app's one valid access token (expired or not); `None` before the first fetch and
    /// after an invalidation.
    access_token: Option<CurrentToken>,
    /// Per API, the injected failures still to give and how many times each.
    failures: HashMap<Api, VecDeque<(Failure, u32)>>,
    calls: HashMap<Api, u64>,
}

impl State {
    fn take_failure(&mut self, api: Api) -> Option<Failure> {
        let queue = self.failures.get_mut(&api)?;
        let (failure, remaining) = queue.front_mut()?;
        let failure = *failure;
        *remaining -= 1;
        if *remaining == 0 {
            queue.pop_front();
        }
        Some(failure)
    }

    /// A new access token, which from now on is the only valid one.
    fn mint_access_token(&mut self, now: Instant) -> IssuedToken {
        let token = Alphanumeric.sample_string(&mut rand::rng(), ACCESS_TOKEN_LEN);
        let expires_at = now + self.access_token_ttl;
        self.access_token = Some(CurrentToken {
            token: token.clone(),
            expires_at,
        });
        IssuedToken {
            access_token: token,
            expires_in: whole_seconds(expires_at - now),
        }
    }

    /// The current token with its remaining lifetime; a new one if there is none, it expired,
    /// or `force_refresh` asks for one.
    fn stable_access_token(&mut self, now: Instant, force_refresh: bool) -> IssuedToken {
        match &self.access_token {
            Some(current) if !force_refresh && current.expires_at > now => IssuedToken {
                access_token: current.token.clone(),
                expires_in: whole_seconds(current.expires_at - now),
            },
            _ => self.mint_access_token(now),
        }
    }

    /// 41001 without a token, 42001 for the current token once expired, 40001 for any other
    /// (replaced, invalidated, never issued).
    fn check_access_token(&self, token: Option<&str>, now: Instant) -> Result<(), Refusal> {
        let token = present(token).ok_or(refusal(41001, "access_token missing"))?;
        match &self.access_token {
            Some(current) if current.token == token => {
                if current.expires_at > now {
                    Ok(())
                } else {
                    Err(refusal(42001, "access_token expired"))
                }
            }
            _ => Err(refusal(
                40001,
                "invalid credential, access_token is invalid or not latest, could get \
                 access_token by getStableAccessToken, more details at \
                 https://mmbizurl.cn/s/JtxxFh33r",
            )),
        }
    }
}

/// Rounded up, so that a token still valid for half a second does not say 0.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

struct Shared {
    app_id: AppId,
    app_secret: Option<SecretString>,
    state: Mutex<State>,
}

/// The fake WeChat. Clones share one state.
#[derive(Clone)]
pub struct MockWeChat {
    shared: Arc<Shared>,
}

impl fmt::Debug for MockWeChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockWeChat")
            .field("app_id", &self.shared.app_id)
            .field("checks_secret", &self.shared.app_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl MockWeChat {
    /// A fake for `app_id`. With `app_secret`, the HTTP endpoints that take credentials check
    /// `appid` (40013) and `secret` (40125) like WeChat; without it, any are accepted.
    pub fn new(app_id: AppId, app_secret: Option<String>) -> Self {
        Self {
            shared: Arc::new(Shared {
                app_id,
                app_secret: app_secret.map(SecretString::from),
                state: Mutex::new(State {
                    code_ttl: DEFAULT_CODE_TTL,
                    codes: Codes::new(),
                    phone_codes: Codes::new(),
                    users: HashMap::new(),
                    access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
                    access_token: None,
                    failures: HashMap::new(),
                    calls: HashMap::new(),
                }),
            }),
        }
    }

    /// Changes how long codes (login and phone codes) minted from now on stay valid (tests of
    /// expiry).
    pub fn with_code_ttl(self, ttl: Duration) -> Self {
        self.state().code_ttl = ttl;
        self
    }

    /// Changes how long access tokens minted from now on stay valid (tests of expiry).
    pub fn with_access_token_ttl(self, ttl: Duration) -> Self {
        self.state().access_token_ttl = ttl;
        self
    }

    /// The app id this fake speaks for (and puts into watermarks).
    pub fn app_id(&self) -> &AppId {
        &self.shared.app_id
    }

    // A panic while holding the lock leaves the maps consistent (every update is a single
    // insert or flag), so a poisoned lock is still usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Mints a random single-use code for `open_id`, valid for the code TTL (5 minutes by
    /// default), as `wx.login` would — and, like `wx.login`, rotates the user's session key:
    /// data encrypted from now on uses the new key, which exchanging this code returns. A
    /// `union_id` is remembered for the user from then on.
    pub fn mint_code(&self, open_id: &str, union_id: Option<&str>) -> String {
        let now = Instant::now();
        let mut guard = self.state();
        let state = &mut *guard;
        // `wx.login` is what rotates the key on WeChat's side: from now on data is encrypted
        // with the new key, and exchanging this code hands that key out.
        let key: [u8; 16] = rand::random();
        let user = state.users.entry(open_id.to_owned()).or_insert(UserEntry {
            session_key: key,
            union_id: None,
        });
        user.session_key = key;
        let entry = CodeEntry {
            open_id: open_id.to_owned(),
            union_id: union_id.map(str::to_owned),
            session_key: key,
            used: false,
        };
        let code = state.codes.mint(now, state.code_ttl, entry);
        tracing::debug!(open_id, "mock WeChat minted a login code");
        code
    }

    /// Mints a random single-use phone code, valid for the code TTL (5 minutes by default), as
    /// a `getPhoneNumber` button hands out when `open_id` agrees to share `phone`.
    /// `getuserphonenumber` redeems it once for `phone`; it is no login code (and a login code
    /// is no phone code: 40029).
    pub fn mint_phone_code(&self, open_id: &str, phone: Phone) -> String {
        let now = Instant::now();
        let mut guard = self.state();
        let state = &mut *guard;
        let entry = PhoneCodeEntry {
            open_id: open_id.to_owned(),
            phone,
        };
        let code = state.phone_codes.mint(now, state.code_ttl, entry);
        tracing::debug!(open_id, "mock WeChat minted a phone code");
        code
    }

    /// The app's current access token, expired or not (a test can send it and see 42001);
    /// `None` before the first fetch and after [`Self::invalidate_access_token`].
    pub fn current_access_token(&self) -> Option<String> {
        self.state()
            .access_token
            .as_ref()
            .map(|current| current.token.clone())
    }

    /// Makes the current access token expire now: calls with it answer 42001, and the next
    /// `stable_token` hands out a new one.
    pub fn expire_access_token(&self) {
        if let Some(current) = &mut self.state().access_token {
            current.expires_at = Instant::now();
        }
    }

    /// Invalidates the current access token, as another server's `cgi-bin/token` or
    /// `force_refresh` would: calls with it answer 40001, and the next `stable_token` hands
    /// out a new one.
    pub fn invalidate_access_token(&self) {
        self.state().access_token = None;
    }

    /// The user's current session key (base64), if they ever logged in.
    pub fn current_session_key(&self, open_id: &str) -> Option<String> {
        self.state()
            .users
            .get(open_id)
            .map(|user| STANDARD.encode(user.session_key))
    }

    /// Encrypts `user_info` with the user's current session key, as WeChat does for
    /// `getUserInfo`/`getUserProfile`.
    ///
    /// Adds `openId` (and `unionId`, when the user has one) if missing, and a watermark with
    /// this app id and the current time. A `watermark` already present is kept as given, so a
    /// test can forge another app's watermark.
    pub fn encrypt_user_info(
        &self,
        open_id: &str,
        user_info: Value,
    ) -> Result<EncryptedPayload, MockError> {
        self.encrypt(open_id, user_info, |info, union_id| {
            info.entry("openId").or_insert_with(|| open_id.into());
            if let Some(union_id) = union_id {
                info.entry("unionId").or_insert_with(|| union_id.into());
            }
        })
    }

    /// Encrypts legacy `getPhoneNumber` data (`phoneNumber`, `purePhoneNumber`, `countryCode`,
    /// given as the test wants them) with the user's current session key, as WeChat did before
    /// phone codes. Adds a watermark like [`Self::encrypt_user_info`], unless one is given.
    pub fn encrypt_phone_number(
        &self,
        open_id: &str,
        phone_info: Value,
    ) -> Result<EncryptedPayload, MockError> {
        self.encrypt(open_id, phone_info, |_, _| {})
    }

    /// Encrypts a JSON object with the user's current session key after `fill` (given the
    /// user's unionid) and the watermark completed it.
    fn encrypt(
        &self,
        open_id: &str,
        data: Value,
        fill: impl FnOnce(&mut Map<String, Value>, Option<String>),
    ) -> Result<EncryptedPayload, MockError> {
        let Value::Object(mut data) = data else {
            return Err(MockError::NotAnObject);
        };
        let (key, union_id) = {
            let state = self.state();
            let user = state
                .users
                .get(open_id)
                .ok_or_else(|| MockError::UnknownUser(open_id.to_owned()))?;
            (user.session_key, user.union_id.clone())
        };
        fill(&mut data, union_id);
        data.entry("watermark").or_insert_with(|| self.watermark());
        let plaintext = Value::Object(data).to_string();
        let iv: [u8; 16] = rand::random();
        let ciphertext = cipher::encrypt(&key, &iv, plaintext.as_bytes());
        Ok(EncryptedPayload {
            encrypted_data: STANDARD.encode(ciphertext),
            iv: STANDARD.encode(iv),
        })
    }

    fn watermark(&self) -> Value {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut watermark = Map::new();
        watermark.insert("appid".into(), self.shared.app_id.as_str().into());
        watermark.insert("timestamp".into(), json!(timestamp));
        Value::Object(watermark)
    }

    /// Makes the next `times` calls of `api` fail with `failure`. Failures queue up per API:
    /// `fail_next(api, Busy, 1)` then `fail_next(api, Risky, 2)` fails once busy, then twice
    /// risky; other APIs are not affected.
    ///
    /// An injected failure (except [`Failure::Slow`]) does not consume the code, because
    /// WeChat failed before looking at it: the same code works once the failures are used up.
    pub fn fail_next(&self, api: Api, failure: Failure, times: u32) {
        if times > 0 {
            let mut state = self.state();
            state
                .failures
                .entry(api)
                .or_default()
                .push_back((failure, times));
        }
    }

    /// Forgets every pending injected failure, of every API.
    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    /// How many calls of `api` arrived, over HTTP or in process, whatever they answered
    /// (tests use it to prove a client did not retry, or never called).
    pub fn calls(&self, api: Api) -> u64 {
        self.state().calls.get(&api).copied().unwrap_or(0)
    }

    /// The front door of every call, over HTTP or in process: counts it, then applies the
    /// next failure injected for `api`, as WeChat's front end would, before the request is
    /// looked at. `Err` is the answer the failure gives instead of the API's.
    async fn admit<T>(&self, api: Api) -> Result<(), Answer<T>> {
        let failure = {
            let mut state = self.state();
            *state.calls.entry(api).or_default() += 1;
            state.take_failure(api)
        };
        match failure {
            None => Ok(()),
            Some(Failure::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Some(Failure::Busy) => Err(Answer::Refused(refusal(-1, "system error"))),
            Some(Failure::RateLimited) => Err(Answer::Refused(refusal(
                45011,
                "api minute-quota reach limit  mustslower  retry next minute",
            ))),
            Some(Failure::Risky) => Err(Answer::Refused(refusal(
                40226,
                "invalid user, high risk user",
            ))),
            Some(Failure::Http500) => Err(Answer::Http500),
            Some(Failure::Garbage) => Err(Answer::Garbage),
            Some(Failure::Truncated) => Err(Answer::Truncated),
        }
    }

    /// One call of `api`: the front door, then the API's `rules`.
    async fn answer<T>(&self, api: Api, rules: impl FnOnce() -> Result<T, Refusal>) -> Answer<T> {
        match self.admit(api).await {
            Err(injected) => injected,
            Ok(()) => rules().map_or_else(Answer::Refused, Answer::Ok),
        }
    }

    /// A call of `api` whose JSON body could not be read: WeChat's 47001, after the front door
    /// like any call.
    pub(crate) async fn malformed_body<T>(&self, api: Api) -> Answer<T> {
        self.answer(api, || Err(refusal(47001, "data format error")))
            .await
    }

    /// One `jscode2session` call: the code must be there, the caller's credentials right, and
    /// the code minted, live and unused.
    pub(crate) async fn jscode2session(
        &self,
        caller: Caller<'_>,
        code: Option<&str>,
    ) -> Answer<Session> {
        self.answer(Api::Jscode2session, || {
            let code = present(code).ok_or(refusal(41008, "missing code"))?;
            self.check_caller(&caller, "authorization_code")?;
            self.exchange(code)
        })
        .await
    }

    /// One `stable_token` call: the current token (see [`State::stable_access_token`]).
    pub(crate) async fn stable_token(
        &self,
        caller: Caller<'_>,
        force_refresh: bool,
    ) -> Answer<IssuedToken> {
        self.answer(Api::StableToken, || {
            self.check_caller(&caller, "client_credential")?;
            Ok(self
                .state()
                .stable_access_token(Instant::now(), force_refresh))
        })
        .await
    }

    /// One `cgi-bin/token` call: always a new token. WeChat lets the previous one work for
    /// about five more minutes; the mock invalidates it at once, which is stricter.
    pub(crate) async fn token(&self, caller: Caller<'_>) -> Answer<IssuedToken> {
        self.answer(Api::Token, || {
            self.check_caller(&caller, "client_credential")?;
            Ok(self.state().mint_access_token(Instant::now()))
        })
        .await
    }

    /// One `getuserphonenumber` call: a valid access token, then a phone code minted, live
    /// and unused (anything else, a login code included, is 40029).
    pub(crate) async fn get_user_phone_number(
        &self,
        access_token: Option<&str>,
        code: Option<&str>,
    ) -> Answer<PhoneAnswer> {
        self.answer(Api::GetUserPhoneNumber, || {
            let now = Instant::now();
            let entry = {
                let mut state = self.state();
                state.check_access_token(access_token, now)?;
                let code = present(code).ok_or(refusal(41008, "missing code"))?;
                state
                    .phone_codes
                    .take(code, now)
                    .ok_or(refusal(40029, "invalid code"))?
            };
            tracing::debug!(open_id = %entry.open_id, "mock WeChat redeemed a phone code");
            Ok(PhoneAnswer {
                phone: entry.phone,
                watermark: self.watermark(),
            })
        })
        .await
    }

    /// One `checksession` call: a valid access token, then `signature` must be the
    /// HMAC-SHA256 of "" keyed with the user's current session key (87009 otherwise).
    pub(crate) async fn checksession(
        &self,
        access_token: Option<&str>,
        open_id: Option<&str>,
        signature: Option<&str>,
        sig_method: Option<&str>,
    ) -> Answer<()> {
        self.answer(Api::CheckSession, || {
            let state = self.state();
            state.check_access_token(access_token, Instant::now())?;
            let open_id = present(open_id).ok_or(refusal(41009, "missing openid"))?;
            if sig_method != Some(SIG_METHOD) {
                return Err(refusal(
                    40097,
                    "invalid args, sig_method must be hmac_sha256",
                ));
            }
            let user = state
                .users
                .get(open_id)
                .ok_or(refusal(40003, "invalid openid"))?;
            let expected = cipher::session_signature(&STANDARD.encode(user.session_key));
            if signature == Some(expected.as_str()) {
                Ok(())
            } else {
                Err(refusal(87009, "invalid signature"))
            }
        })
        .await
    }

    /// The credentials of an API that takes them (`appid`, `secret`, `grant_type`); in-process
    /// callers pass.
    fn check_caller(&self, caller: &Caller<'_>, grant_type: &str) -> Result<(), Refusal> {
        let Caller::Http {
            appid,
            secret,
            grant_type: given,
        } = caller
        else {
            return Ok(());
        };
        let appid = present(*appid).ok_or(refusal(41002, "appid missing"))?;
        let secret = present(*secret).ok_or(refusal(41004, "appsecret missing"))?;
        if *given != Some(grant_type) {
            return Err(refusal(40002, "invalid grant_type"));
        }
        self.check_credentials(appid, secret)
    }

    /// `appid` (40013) and `secret` (40125), as every API that takes them checks them; any
    /// pass when the mock was made without a secret.
    fn check_credentials(&self, appid: &str, secret: &str) -> Result<(), Refusal> {
        if let Some(expected) = &self.shared.app_secret {
            if appid != self.shared.app_id.as_str() {
                return Err(refusal(40013, "invalid appid"));
            }
            if secret != expected.expose_secret() {
                return Err(refusal(40125, "invalid appsecret"));
            }
        }
        Ok(())
    }

    fn exchange(&self, code: &str) -> Result<Session, Refusal> {
        let now = Instant::now();
        let mut guard = self.state();
        let state = &mut *guard;
        let entry = state
            .codes
            .get_mut(code, now)
            .ok_or(refusal(40029, "invalid code"))?;
        if entry.used {
            return Err(refusal(40163, "code been used"));
        }
        entry.used = true;
        // The key was rotated when the code was minted (`wx.login`); hand out that key.
        let key = entry.session_key;
        let user = state
            .users
            .entry(entry.open_id.clone())
            .or_insert(UserEntry {
                session_key: key,
                union_id: None,
            });
        if entry.union_id.is_some() {
            user.union_id.clone_from(&entry.union_id);
        }
        tracing::debug!(open_id = %entry.open_id, "mock WeChat exchanged a code");
        Ok(Session {
            open_id: entry.open_id.clone(),
            union_id: user.union_id.clone(),
            session_key: STANDARD.encode(key),
        })
    }
}

fn mock_returned(what: &str) -> WeChatError {
    WeChatError::Unexpected(format!("mock returned {what}"))
}

impl Session {
    fn into_code_session(self) -> Result<CodeSession, WeChatError> {
        Ok(CodeSession {
            open_id: OpenId::parse(&self.open_id)
                .map_err(|_| mock_returned("an invalid openid"))?,
            union_id: self
                .union_id
                .map(|u| UnionId::parse(&u))
                .transpose()
                .map_err(|_| mock_returned("an invalid unionid"))?,
            session_key: SessionKey::from_base64(&self.session_key)
                .map_err(|_| mock_returned("an invalid session key"))?,
        })
    }
}

impl IssuedToken {
    fn into_issued(self) -> Result<IssuedAccessToken, WeChatError> {
        let expires_in = i64::try_from(self.expires_in)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .ok_or_else(|| mock_returned("an invalid expires_in"))?;
        Ok(IssuedAccessToken {
            token: AccessToken::new(self.access_token),
            expires_in,
        })
    }
}

impl PhoneAnswer {
    /// The port's value, the watermark checked as the HTTP client checks it.
    fn into_phone_info(self, app_id: &AppId) -> Result<PhoneInfo, WeChatError> {
        if self.watermark["appid"].as_str() != Some(app_id.as_str()) {
            return Err(mock_returned("a watermark of another app"));
        }
        Ok(PhoneInfo {
            phone_number: PhoneNumber::parse(&self.phone.phone_number)
                .map_err(|_| mock_returned("an invalid phoneNumber"))?,
            pure_phone_number: self.phone.pure_phone_number,
            country_code: self.phone.country_code.to_string(),
        })
    }
}

/// Maps an answer the way the real HTTP client maps WeChat's, so in-process use behaves alike;
/// `ok` turns the API's success into the port's value.
fn to_result<T, R>(
    answer: Answer<T>,
    ok: impl FnOnce(T) -> Result<R, WeChatError>,
) -> Result<R, WeChatError> {
    match answer {
        Answer::Ok(value) => ok(value),
        Answer::Refused(Refusal { errcode, errmsg }) => Err(match errcode {
            40029 => WeChatError::InvalidCode,
            40163 => WeChatError::CodeUsed,
            45011 | 45009 => WeChatError::RateLimited,
            40226 => WeChatError::RiskyUser,
            -1 => WeChatError::Unavailable("errcode -1 (system busy)".into()),
            40001 | 42001 | 40014 => {
                WeChatError::AccessTokenRejected(format!("errcode {errcode} ({errmsg})"))
            }
            other => WeChatError::Unexpected(format!("errcode {other} ({errmsg})")),
        }),
        Answer::Http500 => Err(WeChatError::Unavailable("HTTP 500".into())),
        Answer::Garbage => Err(WeChatError::Unexpected("response is not JSON".into())),
        Answer::Truncated => Err(WeChatError::Unexpected("response JSON is cut off".into())),
    }
}

impl WeChat for MockWeChat {
    fn app_id(&self) -> &AppId {
        &self.shared.app_id
    }

    async fn code_to_session(&self, code: &LoginCode) -> Result<CodeSession, WeChatError> {
        let answer = self
            .jscode2session(Caller::InProcess, Some(code.as_str()))
            .await;
        to_result(answer, Session::into_code_session)
    }

    async fn stable_access_token(&self) -> Result<IssuedAccessToken, WeChatError> {
        let answer = self.stable_token(Caller::InProcess, false).await;
        to_result(answer, IssuedToken::into_issued)
    }

    async fn phone_number(
        &self,
        access_token: &AccessToken,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, WeChatError> {
        let answer = self
            .get_user_phone_number(Some(access_token.expose()), Some(code.as_str()))
            .await;
        to_result(answer, |phone| phone.into_phone_info(self.app_id()))
    }

    async fn check_session(
        &self,
        access_token: &AccessToken,
        open_id: &OpenId,
        session_key: &SessionKey,
    ) -> Result<bool, WeChatError> {
        let signature = cipher::session_signature(session_key.expose_base64());
        let answer = self
            .checksession(
                Some(access_token.expose()),
                Some(open_id.as_str()),
                Some(&signature),
                Some(SIG_METHOD),
            )
            .await;
        match answer {
            Answer::Refused(Refusal { errcode: 87009, .. }) => Ok(false),
            answer => to_result(answer, |()| Ok(true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};

    use super::*;

    fn mock() -> MockWeChat {
        MockWeChat::new(AppId::parse("wxmock").unwrap(), None)
    }

    fn code(s: &str) -> LoginCode {
        LoginCode::parse(s).unwrap()
    }

    fn decrypt(key_b64: &str, payload: &EncryptedPayload) -> Value {
        let key = STANDARD.decode(key_b64).unwrap();
        let iv = STANDARD.decode(&payload.iv).unwrap();
        let data = STANDARD.decode(&payload.encrypted_data).unwrap();
        let plain = cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .unwrap()
            .decrypt_padded_vec::<Pkcs7>(&data)
            .unwrap();
        serde_json::from_slice(&plain).unwrap()
    }

    #[tokio::test]
    async fn codes_are_single_use() {
        let mock = mock();
        let c = mock.mint_code("o1", Some("u1"));
        let session = mock.code_to_session(&code(&c)).await.unwrap();
        assert_eq!(session.open_id.as_str(), "o1");
        assert_eq!(session.union_id.as_ref().map(UnionId::as_str), Some("u1"));
        assert_eq!(
            STANDARD
                .decode(session.session_key.expose_base64())
                .unwrap()
                .len(),
            16
        );
        assert_eq!(
            mock.code_to_session(&code(&c)).await,
            Err(WeChatError::CodeUsed)
        );
        assert_eq!(
            mock.code_to_session(&code("never-minted")).await,
            Err(WeChatError::InvalidCode)
        );
        assert_eq!(mock.calls(Api::Jscode2session), 3);
    }

    #[tokio::test]
    async fn expired_codes_are_invalid() {
        let mock = mock().with_code_ttl(Duration::from_millis(20));
        let c = mock.mint_code("o1", None);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            mock.code_to_session(&code(&c)).await,
            Err(WeChatError::InvalidCode)
        );
    }

    #[tokio::test]
    async fn every_login_rotates_the_session_key() {
        let mock = mock();
        assert_eq!(mock.current_session_key("o1"), None);
        let first = mock
            .code_to_session(&code(&mock.mint_code("o1", None)))
            .await
            .unwrap();
        assert_eq!(
            mock.current_session_key("o1").as_deref(),
            Some(first.session_key.expose_base64())
        );
        let second = mock
            .code_to_session(&code(&mock.mint_code("o1", None)))
            .await
            .unwrap();
        assert_ne!(first.session_key, second.session_key);
        assert_eq!(
            mock.current_session_key("o1").as_deref(),
            Some(second.session_key.expose_base64())
        );
        // A unionid given once stays known on later logins.
        mock.code_to_session(&code(&mock.mint_code("o2", Some("u2"))))
            .await
            .unwrap();
        let again = mock
            .code_to_session(&code(&mock.mint_code("o2", None)))
            .await
            .unwrap();
        assert_eq!(again.union_id.as_ref().map(UnionId::as_str), Some("u2"));
    }

    #[tokio::test]
    async fn wx_login_rotates_the_key_before_the_code_is_exchanged() {
        let mock = mock();
        let first = mock
            .code_to_session(&code(&mock.mint_code("o1", None)))
            .await
            .unwrap();
        // A second wx.login: WeChat rotates at once, before our server sees the code.
        let fresh = mock.mint_code("o1", None);
        let current = mock.current_session_key("o1").unwrap();
        assert_ne!(current, first.session_key.expose_base64());
        let exchanged = mock.code_to_session(&code(&fresh)).await.unwrap();
        assert_eq!(exchanged.session_key.expose_base64(), current);
    }

    #[tokio::test]
    async fn encryption_round_trips_with_the_newest_key() {
        let mock = mock();
        assert_eq!(
            mock.encrypt_user_info("o1", json!({})),
            Err(MockError::UnknownUser("o1".into()))
        );
        let old = mock
            .code_to_session(&code(&mock.mint_code("o1", Some("u1"))))
            .await
            .unwrap();
        mock.code_to_session(&code(&mock.mint_code("o1", None)))
            .await
            .unwrap();
        assert_eq!(
            mock.encrypt_user_info("o1", json!([1])),
            Err(MockError::NotAnObject)
        );
        let payload = mock
            .encrypt_user_info("o1", json!({"nickName": "Band", "gender": 1}))
            .unwrap();
        assert_eq!(STANDARD.decode(&payload.iv).unwrap().len(), 16);
        let key = mock.current_session_key("o1").unwrap();
        let plain = decrypt(&key, &payload);
        assert_eq!(plain["nickName"], "Band");
        assert_eq!(plain["openId"], "o1");
        assert_eq!(plain["unionId"], "u1");
        assert_eq!(plain["watermark"]["appid"], "wxmock");
        assert!(plain["watermark"]["timestamp"].as_u64().unwrap() > 1_600_000_000);

        // The stale key must not decrypt to the same JSON (strict padding may still pass
        // about 1 time in 256, so compare the content rather than expecting an error).
        let stale = STANDARD.decode(old.session_key.expose_base64()).unwrap();
        let iv = STANDARD.decode(&payload.iv).unwrap();
        let data = STANDARD.decode(&payload.encrypted_data).unwrap();
        let result = cbc::Decryptor::<aes::Aes128>::new_from_slices(&stale, &iv)
            .unwrap()
            .decrypt_padded_vec::<Pkcs7>(&data);
        assert!(result.map_or(true, |p| serde_json::from_slice::<Value>(&p).is_err()));

        // A caller's own watermark and openId are kept.
        let forged = mock
            .encrypt_user_info(
                "o1",
                json!({"openId": "x", "watermark": {"appid": "wxother"}}),
            )
            .unwrap();
        let plain = decrypt(&key, &forged);
        assert_eq!(plain["openId"], "x");
        assert_eq!(plain["watermark"], json!({"appid": "wxother"}));
    }

    #[tokio::test]
    async fn injected_failures_count_down_and_spare_the_code() {
        let mock = mock();
        let c = mock.mint_code("o1", None);
        mock.fail_next(Api::Jscode2session, Failure::Busy, 2);
        mock.fail_next(Api::Jscode2session, Failure::RateLimited, 1);
        mock.fail_next(Api::Jscode2session, Failure::Risky, 1);
        mock.fail_next(Api::Jscode2session, Failure::Http500, 1);
        mock.fail_next(Api::Jscode2session, Failure::Garbage, 1);
        mock.fail_next(Api::Jscode2session, Failure::Garbage, 0);
        let c = code(&c);
        for _ in 0..2 {
            assert!(matches!(
                mock.code_to_session(&c).await,
                Err(WeChatError::Unavailable(_))
            ));
        }
        assert_eq!(
            mock.code_to_session(&c).await,
            Err(WeChatError::RateLimited)
        );
        assert_eq!(mock.code_to_session(&c).await, Err(WeChatError::RiskyUser));
        assert!(matches!(
            mock.code_to_session(&c).await,
            Err(WeChatError::Unavailable(_))
        ));
        assert!(matches!(
            mock.code_to_session(&c).await,
            Err(WeChatError::Unexpected(_))
        ));
        // The failures are used up and the code was never consumed.
        assert!(mock.code_to_session(&c).await.is_ok());
        assert_eq!(mock.calls(Api::Jscode2session), 7);
    }

    #[tokio::test]
    async fn slow_stalls_then_answers_and_clear_forgets() {
        let mock = mock();
        mock.fail_next(
            Api::Jscode2session,
            Failure::Slow(Duration::from_millis(50)),
            1,
        );
        let c = code(&mock.mint_code("o1", None));
        let started = Instant::now();
        assert!(mock.code_to_session(&c).await.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(50));

        mock.fail_next(Api::Jscode2session, Failure::Busy, 5);
        mock.clear_failures();
        let c = code(&mock.mint_code("o1", None));
        assert!(mock.code_to_session(&c).await.is_ok());
    }

    fn phone_code(s: &str) -> PhoneCode {
        PhoneCode::parse(s).unwrap()
    }

    fn mainland(number: &str) -> Phone {
        Phone::new(number, CountryCode::default())
    }

    #[tokio::test]
    async fn stable_token_hands_out_one_token_until_it_expires() {
        let mock = mock().with_access_token_ttl(Duration::from_millis(1500));
        assert_eq!(mock.current_access_token(), None);
        let first = mock.stable_access_token().await.unwrap();
        assert!(first.token.expose().len() >= 32);
        assert_eq!(first.expires_in, chrono::Duration::seconds(2));
        assert_eq!(
            mock.current_access_token().as_deref(),
            Some(first.token.expose())
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        // The same token, with what is left of its lifetime.
        let again = mock.stable_access_token().await.unwrap();
        assert_eq!(again.token, first.token);
        assert_eq!(again.expires_in, chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let renewed = mock.stable_access_token().await.unwrap();
        assert_ne!(renewed.token, first.token);
        assert_eq!(renewed.expires_in, chrono::Duration::seconds(2));
        assert_eq!(mock.calls(Api::StableToken), 3);

        let mock = self::mock();
        let issued = mock.stable_access_token().await.unwrap();
        assert_eq!(issued.expires_in, chrono::Duration::seconds(7200));
    }

    #[tokio::test]
    async fn stale_and_expired_tokens_are_rejected() {
        let mock = mock();
        let code = mock.mint_phone_code("o1", mainland("13800138000"));
        let never_issued = AccessToken::new("never-issued".into());
        let rejected = mock.phone_number(&never_issued, &phone_code(&code)).await;
        assert!(
            matches!(&rejected, Err(WeChatError::AccessTokenRejected(m)) if m.contains("40001")),
            "{rejected:?}"
        );
        let token = mock.stable_access_token().await.unwrap().token;
        mock.expire_access_token();
        let rejected = mock.phone_number(&token, &phone_code(&code)).await;
        assert!(
            matches!(&rejected, Err(WeChatError::AccessTokenRejected(m)) if m.contains("42001")),
            "{rejected:?}"
        );
        // The expired token is still the current one, until stable_token replaces it.
        assert_eq!(mock.current_access_token().as_deref(), Some(token.expose()));
        let fresh = mock.stable_access_token().await.unwrap().token;
        assert_ne!(fresh, token);
        let rejected = mock.phone_number(&token, &phone_code(&code)).await;
        assert!(
            matches!(&rejected, Err(WeChatError::AccessTokenRejected(m)) if m.contains("40001")),
            "{rejected:?}"
        );
        mock.invalidate_access_token();
        assert_eq!(mock.current_access_token(), None);
        let rejected = mock.phone_number(&fresh, &phone_code(&code)).await;
        assert!(
            matches!(&rejected, Err(WeChatError::AccessTokenRejected(m)) if m.contains("40001")),
            "{rejected:?}"
        );
        // None of the refusals used the phone code up.
        let token = mock.stable_access_token().await.unwrap().token;
        assert!(mock.phone_number(&token, &phone_code(&code)).await.is_ok());
    }

    #[tokio::test]
    async fn phone_codes_are_single_use_and_not_login_codes() {
        let mock = mock();
        let token = mock.stable_access_token().await.unwrap().token;
        let once = mock.mint_phone_code("o1", mainland("13800138000"));
        let info = mock.phone_number(&token, &phone_code(&once)).await.unwrap();
        assert_eq!(info.phone_number.as_str(), "13800138000");
        assert_eq!(info.pure_phone_number, "13800138000");
        assert_eq!(info.country_code, "86");
        assert_eq!(
            mock.phone_number(&token, &phone_code(&once)).await,
            Err(WeChatError::InvalidCode)
        );
        // A wx.login code sent here by mistake.
        let login = mock.mint_code("o1", None);
        assert_eq!(
            mock.phone_number(&token, &phone_code(&login)).await,
            Err(WeChatError::InvalidCode)
        );
        // ...and a phone code is no login code either.
        let phone = mock.mint_phone_code("o1", mainland("13800138000"));
        assert_eq!(
            mock.code_to_session(&code(&phone)).await,
            Err(WeChatError::InvalidCode)
        );

        let abroad = Phone::new("+12025550123", CountryCode::Number(1));
        assert_eq!(abroad.pure_phone_number, "2025550123");
        let abroad = mock.mint_phone_code("o2", abroad);
        let info = mock
            .phone_number(&token, &phone_code(&abroad))
            .await
            .unwrap();
        assert_eq!(info.phone_number.as_str(), "+12025550123");
        assert_eq!(info.pure_phone_number, "2025550123");
        assert_eq!(info.country_code, "1");

        let forged = mock.mint_phone_code("o3", mainland("not a number"));
        assert!(matches!(
            mock.phone_number(&token, &phone_code(&forged)).await,
            Err(WeChatError::Unexpected(_))
        ));
        assert_eq!(mock.calls(Api::GetUserPhoneNumber), 5);
    }

    #[tokio::test]
    async fn expired_phone_codes_are_invalid() {
        let mock = mock().with_code_ttl(Duration::from_millis(20));
        let token = mock.stable_access_token().await.unwrap().token;
        let code = mock.mint_phone_code("o1", mainland("13800138000"));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            mock.phone_number(&token, &phone_code(&code)).await,
            Err(WeChatError::InvalidCode)
        );
    }

    #[tokio::test]
    async fn check_session_knows_the_current_key() {
        let mock = mock();
        let token = mock.stable_access_token().await.unwrap().token;
        let o1 = OpenId::parse("o1").unwrap();
        let first = mock
            .code_to_session(&code(&mock.mint_code("o1", None)))
            .await
            .unwrap();
        assert_eq!(
            mock.check_session(&token, &o1, &first.session_key).await,
            Ok(true)
        );
        // A later wx.login rotates the key: the stored one is stale.
        mock.mint_code("o1", None);
        assert_eq!(
            mock.check_session(&token, &o1, &first.session_key).await,
            Ok(false)
        );
        let current = SessionKey::from_base64(&mock.current_session_key("o1").unwrap()).unwrap();
        assert_eq!(mock.check_session(&token, &o1, &current).await, Ok(true));

        let stranger = OpenId::parse("o-never").unwrap();
        assert!(matches!(
            mock.check_session(&token, &stranger, &current).await,
            Err(WeChatError::Unexpected(m)) if m.contains("40003")
        ));
        mock.invalidate_access_token();
        assert!(matches!(
            mock.check_session(&token, &o1, &current).await,
            Err(WeChatError::AccessTokenRejected(_))
        ));
        assert_eq!(mock.calls(Api::CheckSession), 5);
    }

    #[tokio::test]
    async fn failures_are_injected_per_api() {
        let mock = mock();
        mock.fail_next(Api::StableToken, Failure::Busy, 1);
        mock.fail_next(Api::GetUserPhoneNumber, Failure::RateLimited, 1);
        mock.fail_next(Api::CheckSession, Failure::Http500, 1);
        assert!(matches!(
            mock.stable_access_token().await,
            Err(WeChatError::Unavailable(_))
        ));
        let token = mock.stable_access_token().await.unwrap().token;
        let code = phone_code(&mock.mint_phone_code("o1", mainland("13800138000")));
        assert_eq!(
            mock.phone_number(&token, &code).await,
            Err(WeChatError::RateLimited)
        );
        // An injected failure does not use the phone code up.
        assert!(mock.phone_number(&token, &code).await.is_ok());
        let session = mock
            .code_to_session(&self::code(&mock.mint_code("o1", None)))
            .await
            .unwrap();
        let o1 = OpenId::parse("o1").unwrap();
        assert!(matches!(
            mock.check_session(&token, &o1, &session.session_key).await,
            Err(WeChatError::Unavailable(_))
        ));
        assert_eq!(
            mock.check_session(&token, &o1, &session.session_key).await,
            Ok(true)
        );
        for (api, calls) in [
            (Api::Jscode2session, 1),
            (Api::StableToken, 2),
            (Api::Token, 0),
            (Api::GetUserPhoneNumber, 2),
            (Api::CheckSession, 2),
        ] {
            assert_eq!(mock.calls(api), calls, "{api}");
        }
    }

    #[tokio::test]
    async fn legacy_phone_data_is_encrypted_with_the_current_key() {
        let mock = mock();
        let phone = json!({"phoneNumber": "13800138000", "purePhoneNumber": "13800138000", "countryCode": "86"});
        assert_eq!(
            mock.encrypt_phone_number("o1", phone.clone()),
            Err(MockError::UnknownUser("o1".into()))
        );
        mock.mint_code("o1", Some("u1"));
        assert_eq!(
            mock.encrypt_phone_number("o1", json!("13800138000")),
            Err(MockError::NotAnObject)
        );
        let payload = mock.encrypt_phone_number("o1", phone).unwrap();
        let plain = decrypt(&mock.current_session_key("o1").unwrap(), &payload);
        assert_eq!(plain["phoneNumber"], "13800138000");
        assert_eq!(plain["countryCode"], "86");
        assert_eq!(plain["watermark"]["appid"], "wxmock");
        // Phone data carries no identity of the user.
        assert!(plain.get("openId").is_none() && plain.get("unionId").is_none());
    }

    #[test]
    fn codes_expire_and_are_taken_once() {
        let mut codes = Codes::new();
        let now = Instant::now();
        let short = codes.mint(now, Duration::from_secs(1), 1);
        let long = codes.mint(now, Duration::from_secs(60), 2);
        assert_ne!(short, long);
        assert_eq!(short.len(), 32);
        assert_eq!(codes.get_mut(&short, now).copied(), Some(1));
        let later = now + Duration::from_secs(2);
        assert_eq!(codes.get_mut(&short, later), None);
        assert_eq!(codes.take(&long, later), Some(2));
        assert_eq!(codes.take(&long, later), None);
        assert!(codes.live.is_empty());
    }

    #[test]
    fn remaining_lifetimes_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(7200)), 7200);
        assert_eq!(whole_seconds(Duration::from_millis(7_199_001)), 7200);
        assert_eq!(whole_seconds(Duration::ZERO), 0);
    }

    #[test]
    fn failures_deserialize_from_the_control_shape() {
        let parse = |v: Value| serde_json::from_value::<Failure>(v);
        assert_eq!(parse(json!({"mode": "busy"})).unwrap(), Failure::Busy);
        assert_eq!(
            parse(json!({"mode": "rate_limited"})).unwrap(),
            Failure::RateLimited
        );
        assert_eq!(parse(json!({"mode": "http500"})).unwrap(), Failure::Http500);
        assert_eq!(
            parse(json!({"mode": "slow", "delayMs": 3000})).unwrap(),
            Failure::Slow(Duration::from_secs(3))
        );
        assert!(parse(json!({"mode": "slow"})).is_err());
        assert!(parse(json!({"mode": "busy", "delayMs": 5})).is_err());
        assert!(parse(json!({"mode": "nope"})).is_err());
    }
}
