//! Fixtures and the mocked ports every use-case test starts from.

pub use std::sync::{Arc, Mutex};

pub use chrono::{DateTime, Duration, Utc};
pub use uuid::Uuid;
pub use wxlogin_domain::{
    AccessToken, AccessTokenNeed, AppId, AuthError, AvatarUrl, CipherError, CodeSession,
    DecryptedUserInfo, EncryptedData, EncryptedProfile, Gender, IssuedAccessToken, LoginCode,
    LoginError, LoginRecord, LoginService, MockClock, MockTokenMinter, MockUserDataCipher,
    MockUserStore, MockWeChat, NewLogin, NickName, OpenId, PLACEHOLDER_NICKNAME, PhoneCode,
    PhoneError, PhoneInfo, PhoneNumber, PhoneRequest, Profile, ProfileChange, ProfileStatus,
    ProfileText, ProfileUpdate, Service, ServiceConfig, Session, SessionId, SessionKey,
    SessionRecord, StoreError, StoredAccessToken, Token, TokenDigest, UnionId, UpdateProfileError,
    UpdateUserInfoError, User, UserId, WeChatError,
};

pub type TestService =
    Service<MockUserStore, MockWeChat, MockUserDataCipher, MockTokenMinter, MockClock>;

pub const APP_ID: &str = "wx0123456789abcdef";
pub const TTL_HOURS: i64 = 48;
pub const SESSION_KEY: &str = "c2Vzc2lvbi1rZXktMDAwMQ==";
pub const FRESH_KEY: &str = "ZnJlc2gta2V5LTAwMDAwMQ==";
pub const TOKEN: &str = "wxl_the-bearer-token";
pub const PLACEHOLDER_AVATAR: &str = "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132";

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).expect("valid timestamp")
}

pub fn ttl() -> Duration {
    Duration::hours(TTL_HOURS)
}

pub fn app_id() -> AppId {
    AppId::parse(APP_ID).expect("valid app id")
}

pub fn open_id(s: &str) -> OpenId {
    OpenId::parse(s).expect("valid openid")
}

pub fn union_id(s: &str) -> UnionId {
    UnionId::parse(s).expect("valid unionid")
}

pub fn key(s: &str) -> SessionKey {
    SessionKey::from_base64(s).expect("valid session key")
}

pub fn code(s: &str) -> LoginCode {
    LoginCode::parse(s).expect("valid code")
}

/// A deterministic stand-in for SHA-256: distinct tokens give distinct digests.
pub fn fake_digest(token: &str) -> TokenDigest {
    let mut bytes = [0u8; 32];
    for (i, b) in token.bytes().enumerate() {
        bytes[i % 32] = bytes[i % 32].wrapping_mul(31).wrapping_add(b);
    }
    bytes[31] ^= u8::try_from(token.len() % 256).expect("fits");
    TokenDigest::from_bytes(bytes)
}

pub fn complete_profile() -> Profile {
    Profile {
        nick_name: Some(NickName::parse("小明").expect("valid")),
        avatar_url: Some(AvatarUrl::parse("https://example.com/a.png").expect("valid")),
        gender: Some(Gender::Male),
        ..Profile::default()
    }
}

pub fn user(oid: &str, profile: Profile) -> User {
    User {
        id: UserId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
        open_id: open_id(oid),
        union_id: None,
        profile,
        phone_number: None,
        created_at: now() - Duration::days(3),
        updated_at: now() - Duration::days(1),
    }
}

pub fn session_for(
    user: &User,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
) -> Session {
    Session {
        id: SessionId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00aa)),
        user_id: user.id,
        token_digest: fake_digest(TOKEN),
        session_key: key(SESSION_KEY),
        created_at: now() - Duration::hours(1),
        expires_at,
        revoked_at,
        // Seen within the touch interval: authenticating writes nothing.
        last_seen_at: now() - Duration::seconds(30),
    }
}

pub fn active_record() -> SessionRecord {
    let user = user("oUser", Profile::default());
    SessionRecord {
        session: session_for(&user, now() + Duration::hours(1), None),
        user,
    }
}

pub fn encrypted() -> EncryptedData {
    EncryptedData {
        encrypted_data: "ZW5jcnlwdGVk".into(),
        iv: "aXZpdml2aXZpdml2aXZpdg==".into(),
    }
}

pub fn request(code: Option<LoginCode>) -> EncryptedProfile {
    EncryptedProfile {
        data: encrypted(),
        raw_data: None,
        signature: None,
        code,
    }
}

pub fn decrypted(oid: Option<&str>, profile: Profile) -> DecryptedUserInfo {
    DecryptedUserInfo {
        open_id: oid.map(open_id),
        union_id: None,
        profile: ProfileUpdate(profile),
    }
}

pub fn all_wechat_errors() -> Vec<WeChatError> {
    vec![
        WeChatError::InvalidCode,
        WeChatError::CodeUsed,
        WeChatError::RateLimited,
        WeChatError::RiskyUser,
        WeChatError::Unavailable("timeout".into()),
        WeChatError::Unexpected("errcode 40013".into()),
    ]
}

pub fn all_store_errors() -> Vec<StoreError> {
    vec![
        StoreError::Unavailable("pool timed out".into()),
        StoreError::NotFound,
        StoreError::Unexpected("disk I/O error".into()),
    ]
}

/// The five mocks, with the harmless queries (app id, time, digest) answered.
pub struct Mocks {
    pub store: MockUserStore,
    pub wechat: MockWeChat,
    pub cipher: MockUserDataCipher,
    pub tokens: MockTokenMinter,
    pub clock: MockClock,
}

impl Mocks {
    pub fn new() -> Self {
        let mut wechat = MockWeChat::new();
        wechat.expect_app_id().return_const(app_id());
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let mut tokens = MockTokenMinter::new();
        tokens.expect_digest().returning(fake_digest);
        let mut store = MockUserStore::new();
        store.expect_available().returning(|| Ok(()));
        Self {
            store,
            wechat,
            cipher: MockUserDataCipher::new(),
            tokens,
            clock,
        }
    }

    /// Mocks whose store answers `find_session` with `record` for [`TOKEN`]'s digest.
    pub fn with_session(record: SessionRecord) -> Self {
        let mut m = Self::new();
        m.store
            .expect_find_session()
            .withf(|app, digest| *app == app_id() && *digest == fake_digest(TOKEN))
            .times(1)
            .returning(move |_, _| {
                let record = record.clone();
                Box::pin(async move { Ok(Some(record)) })
            });
        m
    }

    // The configured mocks themselves go in: `Clone` on a mock gives a fresh, empty one.
    pub fn service(self) -> TestService {
        self.service_with(ServiceConfig {
            session_ttl: ttl(),
            ..ServiceConfig::default()
        })
    }

    pub fn service_with(self, config: ServiceConfig) -> TestService {
        Service::new(
            self.store,
            self.wechat,
            self.cipher,
            self.tokens,
            self.clock,
            config,
        )
    }

    pub fn exchange_returns(
        &mut self,
        expected_code: &'static str,
        answer: Result<CodeSession, WeChatError>,
    ) {
        self.wechat
            .expect_code_to_session()
            .withf(move |c| c.as_str() == expected_code)
            .times(1)
            .returning(move |_| {
                let answer = answer.clone();
                Box::pin(async move { answer })
            });
    }

    pub fn login_never(&mut self) {
        self.store.expect_login().never();
    }

    pub fn update_never(&mut self) {
        self.store.expect_update_profile().never();
    }

    /// Records the `ProfileChange` the store receives and answers with `answer`.
    pub fn capture_update(
        &mut self,
        answer: Result<User, StoreError>,
    ) -> Arc<Mutex<Option<ProfileChange>>> {
        let seen = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&seen);
        self.store
            .expect_update_profile()
            .times(1)
            .returning(move |change| {
                *slot.lock().expect("not poisoned") = Some(change);
                let answer = answer.clone();
                Box::pin(async move { answer })
            });
        seen
    }
}

pub fn taken<T>(slot: &Arc<Mutex<Option<T>>>) -> T {
    slot.lock()
        .expect("not poisoned")
        .take()
        .expect("the port was called")
}
