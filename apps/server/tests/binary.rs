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

/// `wxlogin mock-wechat` on a free port for `app_ids` with `secret`, up and answering; its URL.
async fn mock_wechat(
    client: &reqwest::Client,
    dir: &std::path::Path,
    app_ids: &[&str],
    secret: &str,
) -> (Proc, String) {
    let port = free_port();
    let mut args = vec![
        "mock-wechat".to_owned(),
        "--addr".into(),
        format!("127.0.0.1:{port}"),
    ];
    for app_id in app_ids {
        args.extend(["--app-id".to_owned(), (*app_id).to_owned()]);
    }
    let mock = Proc(
        Command::new(BIN)
            .args(&args)
            .env("WXLOGIN_MOCK_APP_SECRET", secret)
            .env_remove("RUST_LOG")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_until_up(client, &url).await;
    (mock, url)
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
    let server_port = free_port();
    wxlogin_wechat_http::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let (mock, mock_url) = mock_wechat(
        &client,
        dir.path(),
        &["wxbinary000000000", "wxbinaryshop00000"],
        "binary-secret",
    )
    .await;

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

/// Runs `wxlogin hash-password` with `stdin` piped in; the exit code, stdout and stderr.
fn hash_password(args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .args(args)
        // A broken configuration must not matter: hash-password reads none.
        .env("WXLOGIN__SERVER__ADDR", "not-an-address")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn hash_password_reads_one_line_from_a_pipe_and_prints_a_phc_string() {
    for input in [&b"s3cret pass\n"[..], b"s3cret pass\r\n", b"s3cret pass"] {
        let (code, out, err) = hash_password(&[], input);
        assert_eq!(code, Some(0), "{err}");
        let phc = out.trim_end();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(
            wxlogin_crypto::verify_password(phc, "s3cret pass"),
            "{input:?}"
        );
        assert!(!wxlogin_crypto::verify_password(phc, "s3cret pass\n"));
        assert!(!out.contains("s3cret") && !err.contains("s3cret"));
    }
    // Only the first line is the password.
    let (code, out, _) = hash_password(&[], b"first\nsecond\n");
    assert_eq!(code, Some(0));
    assert!(wxlogin_crypto::verify_password(out.trim_end(), "first"));
}

#[test]
fn hash_password_refuses_an_empty_password_and_any_argument() {
    for input in [&b""[..], b"\n", b"\r\n"] {
        let (code, out, err) = hash_password(&[], input);
        assert_eq!(code, Some(2), "{input:?}: {out}{err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("empty"), "{err}");
    }
    // Never from the command line: an argument is a usage error, and it is not hashed.
    let (code, out, _) = hash_password(&["hunter2"], b"");
    assert_eq!(code, Some(2));
    assert!(!out.contains("$argon2id$"), "{out}");
}

/// SIGTERM with clients in every state: 20 logins in flight (WeChat slowed through the mock
/// binary's control API) are all answered, and a client stalled halfway through its request
/// head does not hold the exit beyond the grace period (its own bound is set far beyond it,
/// so only the drain's end can close it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_requests_in_flight_and_does_not_wait_for_stalled_clients() {
    use tokio::io::AsyncWriteExt as _;

    let dir = tempfile::tempdir().unwrap();
    let server_port = free_port();
    wxlogin_wechat_http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (_mock, mock_url) =
        mock_wechat(&client, dir.path(), &["wxdrain0000000000"], "drain-secret").await;
    let db = dir.path().join("drain.db");
    let mut server = Proc(
        Command::new(BIN)
            .env("WXLOGIN__SERVER__ADDR", format!("127.0.0.1:{server_port}"))
            .env("WXLOGIN__SERVER__SHUTDOWN_GRACE_SECS", "3")
            .env("WXLOGIN__SERVER__HEADER_READ_TIMEOUT_MS", "600000")
            .env(
                "WXLOGIN__DATABASE__URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("WXLOGIN__WECHAT__MODE", "http")
            .env("WXLOGIN__WECHAT__BASE_URL", &mock_url)
            .env("WXLOGIN__WECHAT__APP_ID", "wxdrain0000000000")
            .env("WXLOGIN__WECHAT__APP_SECRET", "drain-secret")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{server_port}");
    wait_until_up(&client, &format!("{url}/healthz")).await;

    let mut codes = Vec::new();
    for i in 0..20 {
        let minted: serde_json::Value = client
            .post(format!("{mock_url}/mock/codes"))
            .json(&serde_json::json!({"openId": format!("o-drain-{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        codes.push(minted["code"].as_str().unwrap().to_owned());
    }
    // Slow enough that every login is still in flight when SIGTERM arrives, well inside the
    // grace period and the WeChat bounds.
    let resp = client
        .post(format!("{mock_url}/mock/failures"))
        .json(&serde_json::json!({"api": "jscode2session", "mode": "slow", "delayMs": 1000, "times": 20}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", server_port))
        .await
        .unwrap();
    stalled
        .write_all(b"POST /onLogin HTTP/1.1\r\nHost: localhost\r\nContent-Le")
        .await
        .unwrap();

    let logins: Vec<_> = codes
        .into_iter()
        .map(|code| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{url}/onLogin"))
                    .form(&[("code", code)])
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // Until every login has reached the mock (so all 20 are in flight).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let calls: serde_json::Value = client
            .get(format!("{mock_url}/mock/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if calls["calls"]["jscode2session"].as_u64() >= Some(20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the logins never reached WeChat: {calls}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sigterm(&server.0);
    for login in logins {
        let status = login.await.unwrap().expect("answered, not cut off");
        assert_eq!(status, 200);
    }
    // The stalled client would hold the exit for 10 minutes; the grace period ends it.
    let status = wait_exit(&mut server.0);
    assert!(status.success(), "SIGTERM exits cleanly: {status}");
    drop(stalled);
}

/// The server on the SQLite file `db`, against the mock WeChat at `mock_url`.
fn sqlite_server(dir: &std::path::Path, db: &std::path::Path, port: u16, mock_url: &str) -> Proc {
    Proc(
        Command::new(BIN)
            .env("WXLOGIN__SERVER__ADDR", format!("127.0.0.1:{port}"))
            .env(
                "WXLOGIN__DATABASE__URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("WXLOGIN__WECHAT__MODE", "http")
            .env("WXLOGIN__WECHAT__BASE_URL", mock_url)
            .env("WXLOGIN__WECHAT__APP_ID", "wxcrash0000000000")
            .env("WXLOGIN__WECHAT__APP_SECRET", "crash-secret")
            .env("WXLOGIN__LOG__FILTER", "warn")
            .env_remove("RUST_LOG")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// SQLite writes the logins that arrive together in one transaction (group commit). A server
/// killed (SIGKILL, no shutdown) in the middle of a stream of concurrent logins loses none it
/// answered: started again on the same file, it accepts every token it handed out, as the
/// user it was handed to. Logins in flight at the kill may or may not have been written; none
/// of them was acknowledged. (A process crash: the system keeps what the process wrote. A
/// power loss under `synchronous = NORMAL` may lose the last commits, see docs/storage.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_login_it_answered() {
    const CLIENTS: usize = 32;
    const CODES_EACH: usize = 400;
    const ANSWERED_BEFORE_KILL: usize = 200;

    let dir = tempfile::tempdir().unwrap();
    let server_port = free_port();
    wxlogin_wechat_http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (_mock, mock_url) =
        mock_wechat(&client, dir.path(), &["wxcrash0000000000"], "crash-secret").await;
    let minted: serde_json::Value = client
        .post(format!("{mock_url}/mock/codes/batch"))
        .json(&serde_json::json!({
            "openIdPrefix": "o-crash-",
            "count": CLIENTS * CODES_EACH,
            "users": CLIENTS * CODES_EACH,
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes: Vec<String> = serde_json::from_value(minted["codes"].clone()).unwrap();
    assert_eq!(codes.len(), CLIENTS * CODES_EACH);

    let db = dir.path().join("crash.db");
    let mut server = sqlite_server(dir.path(), &db, server_port, &mock_url);
    let url = format!("http://127.0.0.1:{server_port}");
    wait_until_up(&client, &format!("{url}/healthz")).await;

    // Clients log in one code after another until the server is gone; each keeps the
    // (token, openId) of every login answered 200.
    let so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for chunk in codes.chunks(CODES_EACH) {
        let (client, login) = (client.clone(), format!("{url}/onLogin"));
        let so_far = std::sync::Arc::clone(&so_far);
        let chunk = chunk.to_vec();
        clients.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for code in chunk {
                let Ok(reply) = client.post(&login).form(&[("code", code)]).send().await else {
                    break;
                };
                if reply.status() != 200 {
                    break;
                }
                let Ok(body) = reply.json::<serde_json::Value>().await else {
                    break;
                };
                let token = body["token"].as_str().unwrap().to_owned();
                let open_id = body["user"]["openId"].as_str().unwrap().to_owned();
                answered.push((token, open_id));
                so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            answered
        }));
    }
    // Kill it once a good number of logins have been answered, in the middle of the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while so_far.load(std::sync::atomic::Ordering::Relaxed) < ANSWERED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "logins are not being answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let mut answered = Vec::new();
    for c in clients {
        answered.extend(c.await.unwrap());
    }
    assert!(
        answered.len() >= ANSWERED_BEFORE_KILL && answered.len() < codes.len(),
        "the kill should fall in the middle of the logins: {} of {} answered",
        answered.len(),
        codes.len()
    );

    let server_port = free_port();
    let _server = sqlite_server(dir.path(), &db, server_port, &mock_url);
    let url = format!("http://127.0.0.1:{server_port}");
    wait_until_up(&client, &format!("{url}/healthz")).await;
    for (token, open_id) in &answered {
        let me = client
            .get(format!("{url}/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "an answered login was lost");
        let me: serde_json::Value = me.json().await.unwrap();
        assert_eq!(me["user"]["openId"], open_id.as_str());
    }
}
