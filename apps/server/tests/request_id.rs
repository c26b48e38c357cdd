//! Every log line of a request carries its request id (the span of `http::strict::around`),
//! the request's one line of `middleware::answer` included. Its own test binary, so the
//! capturing subscriber can be the process-wide default.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::Write;
use std::sync::{Arc, Mutex};

use poem::test::TestClient;
use wxlogin_domain::{AppId, MockAdminService, ServiceConfig};
use wxlogin_server::http::{Apps, HttpConfig, app};
use wxlogin_server::wiring::new_service;
use wxlogin_store_sqlite::Sqlite;
use wxlogin_wechat_mock::MockWeChat;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_of_a_request_carries_its_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wx.db").display());
    let store = Sqlite::connect(&url).await.unwrap();
    let app_id = AppId::parse("wxtest").unwrap();
    let mock = MockWeChat::new(app_id.clone(), None);
    let cli = TestClient::new(app(
        Apps::single(
            app_id,
            new_service(store, mock.clone(), &ServiceConfig::default()),
        ),
        Arc::new(MockAdminService::new()),
        Vec::<(String, poem::Route)>::new(),
        &HttpConfig::default(),
    ));

    // A login logs a line of its own ("login") and the request line; a refusal, the line of
    // `answer` with its error code.
    let code = mock.mint_code("o-logged", None);
    let resp = cli
        .post("/onLogin")
        .header("x-request-id", "rid-login-7")
        .content_type("application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_header("x-request-id", "rid-login-7");
    let resp = cli
        .post("/onLogin")
        .header("x-request-id", "rid-refused-8")
        .content_type("application/json")
        .body(r#"{"code": 1}"#)
        .send()
        .await;
    resp.assert_status(poem::http::StatusCode::BAD_REQUEST);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines_of = |id: &str| -> Vec<&str> { logs.lines().filter(|l| l.contains(id)).collect() };
    let login = lines_of("rid-login-7");
    assert!(
        login.iter().any(|l| l.contains(" login")) && login.iter().any(|l| l.contains("request")),
        "{logs}"
    );
    let refused = lines_of("rid-refused-8");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("request refused") && l.contains("invalid_request")),
        "{logs}"
    );
    // No line of a request lacks its id: every line logged here belongs to one of the two.
    let stray: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("wxlogin_server") && !l.contains("request_id="))
        .collect();
    assert!(
        stray.is_empty(),
        "lines without a request id: {stray:?}\n{logs}"
    );
}
