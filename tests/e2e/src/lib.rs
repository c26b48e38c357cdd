//! The helpers of wxlogin's end-to-end tests (the test targets are in `tests/`, one per flow).
//!
//! `spawn_app` (zero2prod's pattern): the mock WeChat as a real HTTP server on port 0, the real
//! server on port 0 pointed at it, a fresh database per test, and a client that speaks exactly
//! as a mini-program does (form bodies, `code`, `encryptedData`, `iv`, `token`).
//!
//! The adapters come from the environment, set by `cargo xtask test`:
//! `WXLOGIN_TEST_STORE=sqlite|postgres` (a fresh SQLite file, or a fresh database on the server
//! named by `WXLOGIN_TEST_POSTGRES_URL`/`DATABASE_URL`) and `WXLOGIN_TEST_WECHAT=http|inproc`
//! (the real HTTP client against the mock's HTTP server, or the server's in-process mock).
//! A test that only makes sense with one WeChat adapter names it ([`spawn_app_on`]) instead of
//! reading the environment, and lives in a target that the in-process pass does not select.
//!
//! Test code only: it may panic (`expect`) wherever a test would fail anyway.

pub mod proxy;

use std::time::Duration;

use reqwest::{Response, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wxlogin_domain::AppId;
use wxlogin_server::{RunningServer, Settings, WeChatMode, spawn, spawn_with_mock};
use wxlogin_store_postgres::testing::{FreshDatabase, fresh_database, require_admin_url};
use wxlogin_wechat_mock::{Api, EncryptedPayload, MockWeChat};

/// The mini-program the tests play.
pub const APP_ID: &str = "wxe2e0123456789abc";
/// Its secret; the mock checks it, and no answer may ever echo it.
pub const APP_SECRET: &str = "e2e-app-secret-never-echoed";

/// Every field of a user object, and nothing else (DESIGN §5).
pub const USER_FIELDS: [&str; 13] = [
    "id",
    "openId",
    "unionId",
    "nickName",
    "avatarUrl",
    "gender",
    "country",
    "province",
    "city",
    "language",
    "phoneNumber",
    "createdAt",
    "updatedAt",
];

/// The mock WeChat served over HTTP.
pub struct MockServer {
    pub mock: MockWeChat,
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl MockServer {
    pub async fn start(mock: MockWeChat) -> Self {
        Self::start_apps(vec![mock]).await
    }

    /// One mock WeChat server answering for several apps, as WeChat does (`mock` is the
    /// first's).
    pub async fn start_apps(mocks: Vec<MockWeChat>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock WeChat");
        let addr = listener.local_addr().expect("mock address");
        let (tx, rx) = oneshot::channel::<()>();
        let mock = mocks[0].clone();
        let task = tokio::spawn(wxlogin_wechat_mock::serve_apps(
            listener,
            mocks,
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            mock,
            url: format!("http://{addr}"),
            shutdown: Some(tx),
            task,
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// The store the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreUnderTest {
    Sqlite,
    Postgres,
}

pub fn store_under_test() -> StoreUnderTest {
    match std::env::var("WXLOGIN_TEST_STORE").as_deref() {
        Ok("postgres") => StoreUnderTest::Postgres,
        Ok("sqlite") | Err(_) => StoreUnderTest::Sqlite,
        Ok(other) => panic!("WXLOGIN_TEST_STORE={other:?}: use sqlite or postgres"),
    }
}

/// How the server reaches the mock WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeChatUnderTest {
    /// The real HTTP client against the mock's HTTP server (`wechat.mode = http`).
    Http,
    /// The mock in process, as the embedded default runs it (`wechat.mode = mock`).
    InProcess,
}

/// The WeChat adapter the suite runs with: `WXLOGIN_TEST_WECHAT=http` (the default) or
/// `inproc`.
pub fn wechat_under_test() -> WeChatUnderTest {
    match std::env::var("WXLOGIN_TEST_WECHAT").as_deref() {
        Ok("inproc") => WeChatUnderTest::InProcess,
        Ok("http") | Err(_) => WeChatUnderTest::Http,
        Ok(other) => panic!("WXLOGIN_TEST_WECHAT={other:?}: use http or inproc"),
    }
}

/// A fresh, empty database for one test; kept alive as long as the value.
pub enum TestDb {
    Sqlite(TempDir),
    Postgres(FreshDatabase),
}

impl TestDb {
    pub async fn fresh() -> Self {
        Self::fresh_for(store_under_test()).await
    }

    pub async fn fresh_for(store: StoreUnderTest) -> Self {
        match store {
            StoreUnderTest::Sqlite => Self::Sqlite(tempfile::tempdir().expect("temp dir")),
            StoreUnderTest::Postgres => Self::Postgres(
                fresh_database(&require_admin_url())
                    .await
                    .expect("create a fresh Postgres database"),
            ),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => {
                format!("sqlite://{}?mode=rwc", dir.path().join("wx.db").display())
            }
            Self::Postgres(db) => db.url().to_owned(),
        }
    }
}

/// A server, its mock WeChat, its database and a mini-program client.
pub struct TestApp {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>` of the current server (changes on restart).
    pub url: String,
    pub mock: MockWeChat,
    pub mock_server: MockServer,
    /// How the server reaches `mock` (the same across restarts and for siblings).
    pub wechat: WeChatUnderTest,
    /// The settings the server runs with (same database across restarts).
    pub settings: Settings,
    server: Option<RunningServer>,
    /// Holds the database; declared last so it is dropped after the server.
    pub db: TestDb,
}

pub fn client() -> reqwest::Client {
    // reqwest's rustls has no crypto provider of its own here (the workspace's Cargo.toml).
    wxlogin_wechat_http::install_crypto_provider();
    reqwest::Client::builder()
        // Tests talk to loopback only: never through a proxy from the environment.
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("build the reqwest client")
}

/// Settings for the real server in `http` mode against `wechat_url`, on the database `db_url`
/// ([`spawn_server`] switches them to the in-process mock when asked).
pub fn http_settings(db_url: &str, wechat_url: &str) -> Settings {
    let mut settings = Settings::default();
    settings.server.addr = "127.0.0.1:0".into();
    settings.database.url = db_url.to_owned();
    settings.wechat.mode = Some(WeChatMode::Http);
    settings.wechat.base_url = Some(wechat_url.to_owned());
    settings.wechat.app_id = Some(APP_ID.into());
    settings.wechat.app_secret = Some(SecretString::from(APP_SECRET));
    settings.log.filter = "warn".into();
    settings
}

/// A server on a fresh database, with the WeChat adapter the suite runs with.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with the server's settings adjusted first (timeouts, limits).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(wechat_under_test(), adjust).await
}

/// [`spawn_app_with`] on a WeChat adapter named by the test, whatever the environment says:
/// for behaviour that only one adapter has.
pub async fn spawn_app_on(wechat: WeChatUnderTest, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on_db(TestDb::fresh().await, wechat, adjust).await
}

/// [`spawn_app_on`] on a database the test chose (a store the test is about, whatever the
/// environment says). `adjust` may point `database.url` elsewhere (through a proxy); `db`
/// stays the database itself.
pub async fn spawn_app_on_db(
    db: TestDb,
    wechat: WeChatUnderTest,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let app_id = AppId::parse(APP_ID).expect("valid app id");
    let mock = MockWeChat::new(app_id, Some(APP_SECRET.into()));
    let mock_server = MockServer::start(mock.clone()).await;
    let mut settings = http_settings(&db.url(), &mock_server.url);
    adjust(&mut settings);
    let server = spawn_server(settings.clone(), &mock, wechat).await;
    TestApp {
        client: client(),
        url: server.url(),
        mock,
        mock_server,
        wechat,
        settings,
        db,
        server: Some(server),
    }
}

/// Starts a server on `settings` reaching WeChat as `wechat` says: `http` mode as the settings
/// give it, or the shared in-process `mock`.
pub async fn spawn_server(
    settings: Settings,
    mock: &MockWeChat,
    wechat: WeChatUnderTest,
) -> RunningServer {
    let server = match wechat {
        WeChatUnderTest::Http => spawn(settings).await,
        WeChatUnderTest::InProcess => spawn_with_mock(settings, mock.clone()).await,
    };
    server.expect("spawn the server")
}

impl TestApp {
    /// Stops the server (draining it) and starts a new one on the same database and mock.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        let server = spawn_server(self.settings.clone(), &self.mock, self.wechat).await;
        self.url = server.url();
        self.server = Some(server);
    }

    /// Another server on the same database and WeChat, with adjusted settings.
    pub async fn spawn_sibling(&self, adjust: impl FnOnce(&mut Settings)) -> RunningServer {
        let mut settings = self.settings.clone();
        adjust(&mut settings);
        spawn_server(settings, &self.mock, self.wechat).await
    }

    /// How many code exchanges reached the mock WeChat so far (a retry would show here).
    pub fn exchanges(&self) -> u64 {
        self.mock.calls(Api::Jscode2session)
    }

    /// What `wx.login` gives the mini-program.
    pub fn wx_login(&self, open_id: &str) -> String {
        self.mock.mint_code(open_id, None)
    }

    /// `POST /onLogin` as the classic client sends it: a form body `code=…`.
    pub async fn on_login(&self, code: &str) -> Response {
        self.on_login_at(&self.url, code).await
    }

    pub async fn on_login_at(&self, base: &str, code: &str) -> Response {
        self.client
            .post(format!("{base}/onLogin"))
            .form(&[("code", code)])
            .send()
            .await
            .expect("POST /onLogin")
    }

    /// Logs `open_id` in with a fresh code and returns the 200 body.
    pub async fn login_ok(&self, open_id: &str) -> Value {
        let code = self.wx_login(open_id);
        let body = expect_status(self.on_login(&code).await, StatusCode::OK).await;
        assert_login_body(&body, open_id);
        body
    }

    /// [`login_ok`](Self::login_ok) for servers with a short session lifetime.
    pub async fn login_ok_any_expiry(&self, open_id: &str) -> Value {
        let code = self.wx_login(open_id);
        let body = expect_status(self.on_login(&code).await, StatusCode::OK).await;
        assert_eq!(body["status"], 200, "{body}");
        assert_eq!(body["user"]["openId"], open_id, "{body}");
        assert!(timestamp(&body["expiresAt"]) > chrono::Utc::now());
        body
    }

    /// `POST /updateUserInfo` with form fields.
    pub async fn update_user_info(&self, fields: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}/updateUserInfo", self.url))
            .form(fields)
            .send()
            .await
            .expect("POST /updateUserInfo")
    }

    /// What `wx.getUserProfile` hands the mini-program: the user info encrypted with the
    /// user's current session key.
    pub fn encrypt(&self, open_id: &str, user_info: &Value) -> EncryptedPayload {
        self.mock
            .encrypt_user_info(open_id, user_info.clone())
            .expect("the mock encrypts for a user who logged in")
    }

    /// `POST /updateUserInfo` with `encryptedData`, `iv`, `token` and optional extra fields.
    pub async fn send_profile(
        &self,
        payload: &EncryptedPayload,
        token: &str,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut fields = vec![
            ("encryptedData", payload.encrypted_data.as_str()),
            ("iv", payload.iv.as_str()),
            ("token", token),
        ];
        fields.extend_from_slice(extra);
        self.update_user_info(&fields).await
    }
}

/// A WeChat-shaped user info object, as `getUserProfile` returns it (before encryption).
pub fn wechat_user_info(nick_name: &str) -> Value {
    serde_json::json!({
        "nickName": nick_name,
        "avatarUrl": "https://thirdwx.qlogo.cn/mmopen/vi_32/Q0j4TwGTfTK1e2e/132",
        "gender": 1,
        "city": "Guangzhou",
        "province": "Guangdong",
        "country": "China",
        "language": "zh_CN"
    })
}

/// Asserts the status and returns the JSON body (every answer of the API is JSON).
pub async fn expect_status(resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("read the body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "expected JSON, got {content_type:?}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// Asserts an error answer: the HTTP status, and `{"status": <same>, "error": code, "message"}`.
pub async fn expect_error(resp: Response, status: StatusCode, code: &str) -> Value {
    let body = expect_status(resp, status).await;
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
    let obj = body.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 3, "error body has extra fields: {body}");
    assert!(
        !body.to_string().contains(APP_SECRET),
        "secret leaked: {body}"
    );
    body
}

/// Asserts the shape of a `user` object: exactly the documented fields, absent ones `null`.
pub fn assert_user_shape(user: &Value) {
    let obj = user.as_object().expect("user is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = USER_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "user fields: {user}");
    assert!(user["id"].as_str().is_some_and(|s| s.len() == 36), "{user}");
    let created = timestamp(&user["createdAt"]);
    let updated = timestamp(&user["updatedAt"]);
    assert!(updated >= created, "updatedAt before createdAt: {user}");
}

/// Asserts a successful login body for `open_id` and returns nothing; fields are read by callers.
pub fn assert_login_body(body: &Value, open_id: &str) {
    let obj = body.as_object().expect("login body is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "expiresAt",
            "isNewUser",
            "profileComplete",
            "status",
            "token",
            "user"
        ],
        "{body}"
    );
    assert_eq!(body["status"], 200, "{body}");
    let token = body["token"].as_str().expect("token is a string");
    assert!(token.starts_with("wxl_"), "token prefix: {token}");
    assert!(token.len() >= 4 + 43, "token too short: {token}");
    assert!(body["isNewUser"].is_boolean(), "{body}");
    assert!(body["profileComplete"].is_boolean(), "{body}");
    let expires = timestamp(&body["expiresAt"]);
    let now = chrono::Utc::now();
    assert!(
        expires > now + chrono::Duration::days(1),
        "expiresAt should be well in the future: {expires}"
    );
    assert_user_shape(&body["user"]);
    assert_eq!(body["user"]["openId"], open_id, "{body}");
    assert!(body["user"]["phoneNumber"].is_null(), "{body}");
}

pub fn timestamp(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("timestamp {s:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

pub fn token_of(body: &Value) -> String {
    body["token"].as_str().expect("token").to_owned()
}

pub fn user_id_of(body: &Value) -> String {
    body["user"]["id"].as_str().expect("user id").to_owned()
}

/// Asserts that the profile fields of `user` are those of `info`.
pub fn assert_profile(user: &Value, info: &Value) {
    for field in [
        "nickName",
        "avatarUrl",
        "gender",
        "city",
        "province",
        "country",
        "language",
    ] {
        assert_eq!(user[field], info[field], "field {field} of {user}");
    }
}
