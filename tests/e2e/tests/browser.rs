//! Swagger UI in a real browser: headless Chromium, driven through chromedriver (WebDriver),
//! opens `/docs` of the real server, finds every operation of the live `/openapi.json` on the
//! page, and logs in through "Try it out" on `POST /onLogin` with a code minted from the mock
//! WeChat; the token it shows then works on `GET /api/v1/me`. A screenshot of the answered
//! operation goes to `target/`, and to `docs/images/` with `WXLOGIN_UPDATE_SCREENSHOT=1`.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`), hence the
//! `browser` feature; `cargo xtask test` runs it when they are installed. It runs once, on
//! SQLite with the in-process mock: what it proves is the page, not the store.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wxlogin_e2e::*;

/// How long the page may take for any one step (a loaded CI machine builds while it runs).
const STEP: Duration = Duration::from_secs(30);

const OPEN_ID: &str = "o-swagger-ui";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_lists_every_operation_and_logs_in_through_try_it_out() {
    let app = spawn_app_on(WeChatUnderTest::InProcess, |_| {}).await;
    let spec: Value = expect_status(
        app.client
            .get(format!("{}/openapi.json", app.url))
            .send()
            .await
            .expect("GET /openapi.json"),
        StatusCode::OK,
    )
    .await;
    let documented = operations_of(&spec);
    assert!(
        documented.contains(&("POST".to_owned(), "/onLogin".to_owned())),
        "the document has no POST /onLogin: {documented:?}"
    );

    let driver = ChromeDriver::start();
    let browser = driver.session().await;

    // The page, rendered: Swagger UI builds its operation blocks from the embedded document.
    browser
        .goto(&format!("{}/docs", app.url))
        .await
        .expect("open /docs");
    browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css(".opblock .opblock-summary-path"))
        .await
        .expect("Swagger UI renders the operations");
    let shown = shown_operations(&browser).await;
    let missing: Vec<_> = documented.difference(&shown).collect();
    let extra: Vec<_> = shown.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "Swagger UI does not show the live document's operations: missing {missing:?}, \
         not in the document {extra:?}"
    );

    // POST /onLogin, through "Try it out" with a JSON body.
    let block = on_login_block(&browser).await;
    block
        .find(Locator::Css(".opblock-summary"))
        .await
        .expect("the summary of POST /onLogin")
        .click()
        .await
        .expect("expand POST /onLogin");
    let try_it = wait_in(&block, ".try-out__btn").await;
    try_it.click().await.expect("click Try it out");
    let content_type = wait_in(&block, ".opblock-section-request-body select").await;
    content_type
        .select_by_value("application/json; charset=utf-8")
        .await
        .expect("pick the JSON request body");
    let body = wait_in(&block, "textarea.body-param__text").await;
    let code = app.wx_login(OPEN_ID);
    body.clear().await.expect("clear the example body");
    body.send_keys(&json!({ "code": code }).to_string())
        .await
        .expect("type the request body");
    wait_in(&block, "button.execute")
        .await
        .click()
        .await
        .expect("click Execute");

    // The answer as the page shows it.
    let status = wait_in(
        &block,
        ".live-responses-table tr.response .response-col_status",
    )
    .await;
    let status = status.text().await.expect("the shown status");
    let shown_body = wait_in(
        &block,
        ".live-responses-table tr.response .response-col_description pre",
    )
    .await
    .text()
    .await
    .expect("the shown response body");
    save_screenshot(&browser, &block).await;
    assert_eq!(status.trim(), "200", "shown response body: {shown_body}");
    let login: Value = serde_json::from_str(&shown_body)
        .unwrap_or_else(|e| panic!("the shown body is not JSON ({e}): {shown_body}"));
    assert_login_body(&login, OPEN_ID);
    let token = token_of(&login);
    assert!(token.starts_with("wxl_"), "token prefix: {token}");

    // And the server agrees: the token the page showed is a live session.
    let me = expect_status(
        app.client
            .get(format!("{}/api/v1/me", app.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /api/v1/me"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["user"]["openId"], OPEN_ID, "{me}");
    assert_eq!(
        app.exchanges(),
        1,
        "exactly one code exchange reached WeChat"
    );

    browser.close().await.expect("end the WebDriver session");
}

/// Every operation of an OpenAPI document as (METHOD, path).
fn operations_of(spec: &Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_object().expect("the document has paths");
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let ops: BTreeSet<_> = paths
        .iter()
        .flat_map(|(path, item)| {
            methods
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    assert!(!ops.is_empty(), "the document lists no operation");
    ops
}

/// The operations Swagger UI shows: each `.opblock` names its method and path.
async fn shown_operations(browser: &Client) -> BTreeSet<(String, String)> {
    let mut shown = BTreeSet::new();
    for block in browser
        .find_all(Locator::Css(".opblock"))
        .await
        .expect("the operation blocks")
    {
        let method = block
            .find(Locator::Css(".opblock-summary-method"))
            .await
            .expect("an operation block names its method")
            .text()
            .await
            .expect("method text");
        let path = block
            .find(Locator::Css(".opblock-summary-path"))
            .await
            .expect("an operation block names its path")
            .attr("data-path")
            .await
            .expect("path attribute")
            .expect("the path element carries data-path");
        shown.insert((method.trim().to_uppercase(), path));
    }
    shown
}

/// The block of `POST /onLogin`.
async fn on_login_block(browser: &Client) -> Element {
    for block in browser
        .find_all(Locator::Css(".opblock.opblock-post"))
        .await
        .expect("the POST blocks")
    {
        let path = block
            .find(Locator::Css(".opblock-summary-path"))
            .await
            .expect("path element")
            .attr("data-path")
            .await
            .expect("path attribute");
        if path.as_deref() == Some("/onLogin") {
            return block;
        }
    }
    panic!("no POST /onLogin block on the page");
}

/// Waits until `css` appears inside `parent` (Swagger UI renders each step after a click).
async fn wait_in(parent: &Element, css: &str) -> Element {
    let deadline = Instant::now() + STEP;
    loop {
        match parent.find(Locator::Css(css)).await {
            Ok(found) => return found,
            Err(e) if Instant::now() >= deadline => panic!("{css} never appeared: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The answered operation block as PNG: in `target/`, and in `docs/images/` when asked.
/// The picture leaves out the table of documented answers below the live one (a dozen error
/// codes, on the page as before), and the window grows to the block so all of it is painted.
async fn save_screenshot(browser: &Client, block: &Element) {
    let reference = serde_json::to_value(block).expect("an element reference");
    let height = browser
        .execute(
            "const block = arguments[0];
             block.querySelectorAll('table.responses-table:not(.live-responses-table)')
                 .forEach(t => { t.style.display = 'none'; });
             block.scrollIntoView();
             return Math.ceil(block.getBoundingClientRect().height);",
            vec![reference],
        )
        .await
        .expect("measure the block")
        .as_u64()
        .expect("a height in pixels");
    let height = u32::try_from(height).expect("a sane height");
    browser
        .set_window_size(1280, height + 200)
        .await
        .expect("grow the window to the block");
    let png = block.screenshot().await.expect("screenshot the block");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    std::fs::create_dir_all(&target).expect("create the target directory");
    let out = target.join("swagger-ui-try-it-out.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    eprintln!("browser: screenshot in {}", out.display());
    if std::env::var("WXLOGIN_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let doc = root.join("docs/images/swagger-ui-try-it-out.png");
        std::fs::create_dir_all(doc.parent().expect("docs/images")).expect("create docs/images");
        std::fs::write(&doc, &png).expect("write the docs screenshot");
        eprintln!("browser: wrote docs/images/swagger-ui-try-it-out.png");
    }
}

/// chromedriver on a free loopback port, in its own process group so that the browsers it
/// starts go with it: killed on drop, so on a failed assertion too.
struct ChromeDriver {
    child: Child,
    url: String,
    /// Chromium's profile; removed after the processes are gone.
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    fn start() -> Self {
        use std::os::unix::process::CommandExt as _;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(find_binary("chromedriver"))
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().expect("a profile directory"),
        }
    }

    /// A WebDriver session with headless Chromium, once chromedriver answers.
    async fn session(&self) -> Client {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": find_binary("chromium"),
                "args": [
                    "--headless=new",
                    // CI runs as root in a container: no user namespace for the sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1600",
                    "--no-first-run",
                    "--no-default-browser-check",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        let deadline = Instant::now() + STEP;
        loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&self.url).await {
                Ok(client) => return client,
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "no WebDriver session from chromedriver at {}: {e}",
                        self.url
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `profile` is removed after this, when the fields drop.
    }
}

/// `name` from PATH, else from /usr/bin (Debian's place for both).
fn find_binary(name: &str) -> String {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| panic!("{name} not found (apt-get install chromium chromium-driver)"))
}
