//! The `wxlogin` binary as an operator runs it: configured only through the documented
//! `WXLOGIN__SECTION__KEY` variables, talking to `wxlogin mock-wechat` over HTTP, and
//! draining and exiting cleanly on SIGTERM. Invalid configuration fails with one line.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wxlogin");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_up(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_by_environment_against_the_mock_wechat_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (mock_port, server_port) = (free_port(), free_port());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let mock = Proc(
        Command::new(BIN)
            .args([
                "mock-wechat",
                "--addr",
                &format!("127.0.0.1:{mock_port}"),
                "--app-id",
                "wxbinary000000000",
                "--app-id",
                "wxbinaryshop00000",
            ])
            .env("WXLOGIN_MOCK_APP_SECRET", "binary-secret")
            .env_remove("RUST_LOG")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mock_url = format!("http://127.0.0.1:{mock_port}");
    wait_until_up(&client, &mock_url).await;

    let db = dir.path().join("env.db");
    // A second mini-program: array entries come from the file (./wxlogin.toml), the rest from
    // the environment.
    std::fs::write(
        dir.path().join("wxlogin.toml"),
        "[[wechat.apps]]\nname = \"shop\"\napp_id = \"wxbinaryshop00000\"\n\
         app_secret = \"binary-secret\"\n",
    )
    .unwrap();
    let mut server = Proc(
        Command::new(BIN)
            .env("WXLOGIN__SERVER__ADDR", format!("127.0.0.1:{server_port}"))
            .env(
                "WXLOGIN__DATABASE__URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("WXLOGIN__WECHAT__MODE", "http")
            .env("WXLOGIN__WECHAT__BASE_URL", &mock_url)
            .env("WXLOGIN__WECHAT__APP_ID", "wxbinary000000000")
            .env("WXLOGIN__WECHAT__APP_SECRET", "binary-secret")
            // The log assertions below need the configured `info` level.
            .env_remove("RUST_LOG")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{server_port}");
    wait_until_up(&client, &format!("{url}/healthz")).await;

    // wx.login through the mock binary's control API, then the classic login.
    let minted: serde_json::Value = client
        .post(format!("{mock_url}/mock/codes"))
        .json(&serde_json::json!({"openId": "o-binary"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = minted["code"].as_str().unwrap();
    let resp = client
        .post(format!("{url}/onLogin"))
        .form(&[("code", code)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["openId"], "o-binary");
    assert!(db.exists(), "WXLOGIN__DATABASE__URL was honoured");

    // The second app, through its control API on the mock binary and WeChat's Referer.
    let minted: serde_json::Value = client
        .post(format!("{mock_url}/mock/apps/wxbinaryshop00000/codes"))
        .json(&serde_json::json!({"openId": "o-binary-shop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = client
        .post(format!("{url}/onLogin"))
        .header(
            "Referer",
            "https://servicewechat.com/wxbinaryshop00000/devtools/page-frame.html",
        )
        .form(&[("code", minted["code"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shop: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(shop["user"]["openId"], "o-binary-shop");
    // The in-process mock's control API is not mounted in http mode.
    let resp = client
        .post(format!("{url}/mock/codes"))
        .json(&serde_json::json!({"openId": "o-x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    sigterm(&server.0);
    let status = wait_exit(&mut server.0);
    assert!(status.success(), "SIGTERM exits cleanly: {status}");
    let mut logs = String::new();
    use std::io::Read as _;
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("graceful shutdown") || logs.contains("shutting down"),
        "{logs}"
    );
    assert!(
        !logs.contains("binary-secret"),
        "the app secret reached the log"
    );
    assert!(
        !logs.contains(body["token"].as_str().unwrap()),
        "a token reached the log"
    );
    drop(mock);
}

#[test]
fn invalid_configuration_fails_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env("WXLOGIN__SERVER__ADDR", "not-an-address")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("server.addr"), "{err}");

    let out = Command::new(BIN)
        .env("WXLOGIN__WECHAT__MODE", "http")
        .env("WXLOGIN__WECHAT__APP_SECRET", "s3cret-value")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("wechat.app_id"), "{err}");
    assert!(!err.contains("s3cret-value"), "{err}");
}
