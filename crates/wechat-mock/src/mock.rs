//! The fake's state and rules: codes, users, session keys, and failures injected per API.
//!
//! Every API call, over HTTP or in process, enters through [`MockWeChat::admit`] (count the
//! call, apply the next failure injected for that API), and each API's rules are written once
//! ([`MockWeChat::jscode2session`]) for both the HTTP endpoint and the in-process [`WeChat`]
//! impl, so the two cannot drift apart.

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
    AppId, CodeSession, LoginCode, OpenId, SessionKey, UnionId, WeChat, WeChatError,
};

use crate::api::Api;
use crate::cipher;

/// How long a minted code can be exchanged, as on WeChat.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(5 * 60);

/// The longest stall [`Failure::Slow`] accepts from the control API; longer would only hang
/// test runs.
const MAX_SLOW: Duration = Duration::from_secs(600);

/// A failure to inject into the next calls of one [`Api`].
///
/// Deserializes from the control API's shape: `{"mode": "busy"}`, `{"mode": "slow",
/// "delayMs": 3000}`; modes are `busy`, `rate_limited`, `risky`, `http500`, `garbage`, `slow`.
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

/// Why the mock refused a control request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MockError {
    /// The user never exchanged a code, so WeChat would have no session key for them.
    #[error("user {0} has never logged in")]
    UnknownUser(String),
    /// User info must be a JSON object.
    #[error("userInfo must be a JSON object")]
    NotAnObject,
}

/// What one call answers, before it is rendered as HTTP or mapped to an error: the API's own
/// success value, or one of the failures every API shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer<T> {
    Ok(T),
    Error { errcode: i64, errmsg: &'static str },
    Http500,
    Garbage,
}

impl<T> Answer<T> {
    const fn error(errcode: i64, errmsg: &'static str) -> Self {
        Self::Error { errcode, errmsg }
    }
}

/// `jscode2session`'s success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) open_id: String,
    pub(crate) union_id: Option<String>,
    pub(crate) session_key: String,
}

/// Who is calling: in-process callers are trusted, HTTP callers send credentials.
pub(crate) enum Caller<'a> {
    InProcess,
    Http {
        appid: Option<&'a str>,
        secret: Option<&'a str>,
        grant_type: Option<&'a str>,
    },
}

struct CodeEntry {
    open_id: String,
    union_id: Option<String>,
    /// The session key this login made current; the exchange hands it out.
    session_key: [u8; 16],
    expires_at: Instant,
    used: bool,
}

struct UserEntry {
    session_key: [u8; 16],
    union_id: Option<String>,
}

struct State {
    code_ttl: Duration,
    codes: HashMap<String, CodeEntry>,
    // Codes in mint order, so expired ones are dropped from the front without a full scan;
    // used codes stay until they expire so a replay answers 40163, not 40029.
    expiry: VecDeque<(Instant, String)>,
    users: HashMap<String, UserEntry>,
    /// Per API, the injected failures still to give and how many times each.
    failures: HashMap<Api, VecDeque<(Failure, u32)>>,
    calls: HashMap<Api, u64>,
}

impl State {
    fn prune(&mut self, now: Instant) {
        while let Some((expires_at, _)) = self.expiry.front() {
            if *expires_at > now {
                break;
            }
            if let Some((_, code)) = self.expiry.pop_front() {
                self.codes.remove(&code);
            }
        }
    }

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
    /// A fake for `app_id`. With `app_secret`, the HTTP endpoint checks `appid` (40013) and
    /// `secret` (40125) like WeChat; without it, any credentials are accepted.
    pub fn new(app_id: AppId, app_secret: Option<String>) -> Self {
        Self {
            shared: Arc::new(Shared {
                app_id,
                app_secret: app_secret.map(SecretString::from),
                state: Mutex::new(State {
                    code_ttl: DEFAULT_CODE_TTL,
                    codes: HashMap::new(),
                    expiry: VecDeque::new(),
                    users: HashMap::new(),
                    failures: HashMap::new(),
                    calls: HashMap::new(),
                }),
            }),
        }
    }

    /// Changes how long codes minted from now on stay valid (tests of expiry).
    pub fn with_code_ttl(self, ttl: Duration) -> Self {
        self.state().code_ttl = ttl;
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
    /// data encrypted from now on uses the new key, which exchanging this code returns. A `union_id` is remembered for the user from then on.
    pub fn mint_code(&self, open_id: &str, union_id: Option<&str>) -> String {
        let now = Instant::now();
        let mut state = self.state();
        state.prune(now);
        let code = loop {
            // Real codes are 32 alphanumeric characters; collisions are astronomically
            // unlikely, but a duplicate would silently hand one user another's login.
            let code = Alphanumeric.sample_string(&mut rand::rng(), 32);
            if !state.codes.contains_key(&code) {
                break code;
            }
        };
        let expires_at = now + state.code_ttl;
        // `wx.login` is what rotates the key on WeChat's side: from now on data is encrypted
        // with the new key, and exchanging this code hands that key out.
        let key: [u8; 16] = rand::random();
        let user = state.users.entry(open_id.to_owned()).or_insert(UserEntry {
            session_key: key,
            union_id: None,
        });
        user.session_key = key;
        state.codes.insert(
            code.clone(),
            CodeEntry {
                open_id: open_id.to_owned(),
                union_id: union_id.map(str::to_owned),
                session_key: key,
                expires_at,
                used: false,
            },
        );
        state.expiry.push_back((expires_at, code.clone()));
        tracing::debug!(open_id, "mock WeChat minted a login code");
        code
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
        let Value::Object(mut info) = user_info else {
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
        info.entry("openId").or_insert_with(|| open_id.into());
        if let Some(union_id) = union_id {
            info.entry("unionId").or_insert_with(|| union_id.into());
        }
        info.entry("watermark").or_insert_with(|| self.watermark());
        let plaintext = Value::Object(info).to_string();
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
    pub(crate) async fn admit<T>(&self, api: Api) -> Result<(), Answer<T>> {
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
            Some(Failure::Busy) => Err(Answer::error(-1, "system error")),
            Some(Failure::RateLimited) => Err(Answer::error(
                45011,
                "api minute-quota reach limit  mustslower  retry next minute",
            )),
            Some(Failure::Risky) => Err(Answer::error(40226, "invalid user, high risk user")),
            Some(Failure::Http500) => Err(Answer::Http500),
            Some(Failure::Garbage) => Err(Answer::Garbage),
        }
    }

    /// One `jscode2session` call: the front door, then the request's parameters, then the
    /// code.
    pub(crate) async fn jscode2session(
        &self,
        caller: Caller<'_>,
        code: Option<&str>,
    ) -> Answer<Session> {
        if let Err(injected) = self.admit(Api::Jscode2session).await {
            return injected;
        }
        if let Some(refusal) = self.check_request(&caller, code) {
            return refusal;
        }
        match code {
            Some(code) => self.exchange(code),
            None => Answer::error(41008, "missing code"),
        }
    }

    fn check_request(&self, caller: &Caller<'_>, code: Option<&str>) -> Option<Answer<Session>> {
        let Caller::Http {
            appid,
            secret,
            grant_type,
        } = caller
        else {
            return None;
        };
        fn present(v: Option<&str>) -> Option<&str> {
            v.filter(|s| !s.is_empty())
        }
        let Some(appid) = present(*appid) else {
            return Some(Answer::error(41002, "appid missing"));
        };
        let Some(secret) = present(*secret) else {
            return Some(Answer::error(41004, "appsecret missing"));
        };
        if present(code).is_none() {
            return Some(Answer::error(41008, "missing code"));
        }
        if *grant_type != Some("authorization_code") {
            return Some(Answer::error(40002, "invalid grant_type"));
        }
        self.check_credentials(appid, secret).err()
    }

    /// `appid` (40013) and `secret` (40125), as every API that takes them checks them; any
    /// pass when the mock was made without a secret.
    fn check_credentials<T>(&self, appid: &str, secret: &str) -> Result<(), Answer<T>> {
        if let Some(expected) = &self.shared.app_secret {
            if appid != self.shared.app_id.as_str() {
                return Err(Answer::error(40013, "invalid appid"));
            }
            if secret != expected.expose_secret() {
                return Err(Answer::error(40125, "invalid appsecret"));
            }
        }
        Ok(())
    }

    fn exchange(&self, code: &str) -> Answer<Session> {
        let now = Instant::now();
        let mut guard = self.state();
        let state = &mut *guard;
        state.prune(now);
        let Some(entry) = state.codes.get_mut(code) else {
            return Answer::error(40029, "invalid code");
        };
        if entry.used {
            return Answer::error(40163, "code been used");
        }
        if entry.expires_at <= now {
            return Answer::error(40029, "invalid code");
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
        Answer::Ok(Session {
            open_id: entry.open_id.clone(),
            union_id: user.union_id.clone(),
            session_key: STANDARD.encode(key),
        })
    }
}

impl Session {
    fn into_code_session(self) -> Result<CodeSession, WeChatError> {
        let unexpected = |what: &str| WeChatError::Unexpected(format!("mock returned {what}"));
        Ok(CodeSession {
            open_id: OpenId::parse(&self.open_id).map_err(|_| unexpected("an invalid openid"))?,
            union_id: self
                .union_id
                .map(|u| UnionId::parse(&u))
                .transpose()
                .map_err(|_| unexpected("an invalid unionid"))?,
            session_key: SessionKey::from_base64(&self.session_key)
                .map_err(|_| unexpected("an invalid session key"))?,
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
        Answer::Error { errcode, .. } => Err(match errcode {
            40029 => WeChatError::InvalidCode,
            40163 => WeChatError::CodeUsed,
            45011 => WeChatError::RateLimited,
            40226 => WeChatError::RiskyUser,
            -1 => WeChatError::Unavailable("errcode -1 (system busy)".into()),
            other => WeChatError::Unexpected(format!("errcode {other}")),
        }),
        Answer::Http500 => Err(WeChatError::Unavailable("HTTP 500".into())),
        Answer::Garbage => Err(WeChatError::Unexpected("response is not JSON".into())),
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
