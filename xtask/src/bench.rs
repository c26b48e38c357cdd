//! `cargo xtask bench`: the release binary under load on loopback, first on SQLite, then on
//! Postgres, against the mock WeChat running as its own HTTP server. wrk (Debian's, installed
//! when missing) drives each endpoint with xtask/bench/wrk.lua from files of pre-minted codes
//! and tokens; callgrind counts the server's instructions per request, which machine noise
//! cannot move. The tables go between markers in docs/benchmarks.md (a rerun replaces only
//! its own sections), the ratio chart to docs/benchmarks.svg.
//!
//! Everything it starts listens on 127.0.0.1 and is stopped when it returns; it never sends a
//! request anywhere else.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::postgres;

/// The app the mock answers for and the server is configured with.
const APP_ID: &str = "wx0000000000000000";
const APP_SECRET: &str = "bench-app-secret";
/// The load: 64 connections from wrk's 2 threads (one per core here).
const CONNECTIONS: u32 = 64;
const THREADS: u32 = 2;
/// Default seconds per endpoint, and per endpoint with `--quick`.
const DURATION_SECS: u64 = 8;
const QUICK_SECS: u64 = 2;
/// Users logged in before the load: the returning users, and the users whose tokens the
/// authenticated endpoints cycle over.
const USERS: usize = 1_000;
const QUICK_USERS: usize = 200;
/// The most codes one control-API batch mints (`wxlogin_wechat_mock::MAX_BATCH`).
const MAX_CODES: f64 = 1_000_000.0;
/// Requests per callgrind run, (N1, N2); instructions per request are
/// (Ir(N2) - Ir(N1)) / (N2 - N1).
const CALLGRIND_N: (u64, u64) = (100, 500);
const QUICK_CALLGRIND_N: (u64, u64) = (20, 220);
/// The targets, everywhere at 64 connections.
const P99_TARGET_MS: f64 = 25.0;
const RSS_TARGET_MIB: f64 = 64.0;

pub struct Options {
    pub quick: bool,
    pub duration: Option<u64>,
    pub sqlite: bool,
    pub postgres: bool,
    pub callgrind: bool,
    pub write: bool,
    pub svg: bool,
    /// Only these endpoints (by key) after `/healthz`, which every run measures first; empty
    /// for all of them. A filtered run prints its table and writes nothing.
    pub only: Vec<String>,
    /// The command as typed, for the report.
    pub command: String,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    fn key(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "Postgres",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        [Self::Sqlite, Self::Postgres]
            .into_iter()
            .find(|s| s.key() == key)
    }
}

/// What is measured, in the order it is measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Healthz,
    LoginNew,
    LoginReturning,
    UpdateUserInfo,
    Me,
    Profile,
    Phone,
}

impl Endpoint {
    const ALL: [Self; 7] = [
        Self::Healthz,
        Self::LoginNew,
        Self::LoginReturning,
        Self::UpdateUserInfo,
        Self::Me,
        Self::Profile,
        Self::Phone,
    ];

    /// Its name in the data comment of docs/benchmarks.md.
    fn key(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::LoginNew => "login_new",
            Self::LoginReturning => "login_returning",
            Self::UpdateUserInfo => "update_user_info",
            Self::Me => "me",
            Self::Profile => "profile",
            Self::Phone => "phone",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Healthz => "`GET /healthz` (the ceiling)",
            Self::LoginNew => "`POST /onLogin`, a new user each",
            Self::LoginReturning => "`POST /onLogin`, returning users",
            Self::UpdateUserInfo => "`POST /updateUserInfo`",
            Self::Me => "`GET /api/v1/me`",
            Self::Profile => "`PATCH /api/v1/me/profile`",
            Self::Phone => "`POST /api/v1/me/phone`",
        }
    }

    /// Its label under the chart's bars.
    fn short(self) -> &'static str {
        match self {
            Self::Healthz => "/healthz",
            Self::LoginNew => "login, new user",
            Self::LoginReturning => "login, returning",
            Self::UpdateUserInfo => "/updateUserInfo",
            Self::Me => "GET /me",
            Self::Profile => "PATCH /me/profile",
            Self::Phone => "POST /me/phone",
        }
    }

    fn request(self) -> (&'static str, &'static str, &'static str) {
        const FORM: &str = "application/x-www-form-urlencoded";
        const JSON: &str = "application/json";
        match self {
            Self::Healthz => ("GET", "/healthz", ""),
            Self::LoginNew | Self::LoginReturning => ("POST", "/onLogin", FORM),
            Self::UpdateUserInfo => ("POST", "/updateUserInfo", FORM),
            Self::Me => ("GET", "/api/v1/me", ""),
            Self::Profile => ("PATCH", "/api/v1/me/profile", JSON),
            Self::Phone => ("POST", "/api/v1/me/phone", JSON),
        }
    }

    /// Whether each request spends a single-use code (then the file is read once, not cycled).
    fn single_use(self) -> bool {
        matches!(self, Self::LoginNew | Self::LoginReturning | Self::Phone)
    }

    /// The target for the ratio to `/healthz`.
    fn ratio_target(self, store: Store) -> Option<f64> {
        match (self, store) {
            (Self::LoginNew, Store::Sqlite) => Some(0.20),
            (Self::LoginNew, Store::Postgres) => Some(0.12),
            (Self::LoginReturning, Store::Sqlite) => Some(0.25),
            (Self::LoginReturning, Store::Postgres) => Some(0.15),
            (Self::Me, Store::Sqlite) => Some(0.60),
            (Self::Me, Store::Postgres) => Some(0.40),
            _ => None,
        }
    }
}

/// One endpoint's figures.
struct Row {
    endpoint: Endpoint,
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    peak_rss_mib: Option<f64>,
}

struct StoreResult {
    store: Store,
    rows: Vec<Row>,
    /// Whether the peak RSS is per endpoint (reset before each) or the process's so far.
    rss_per_endpoint: bool,
}

struct CallgrindResult {
    n: (u64, u64),
    login: f64,
    me: f64,
}

/// Where and when, for the report.
struct RunInfo {
    date: String,
    commit: String,
    command: String,
    machine: String,
    load: String,
    secs: u64,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let secs = opts.duration.unwrap_or(if opts.quick {
        QUICK_SECS
    } else {
        DURATION_SECS
    });
    if secs == 0 {
        bail!("--duration must be at least 1 second");
    }
    let endpoints: Vec<Endpoint> = Endpoint::ALL
        .into_iter()
        .filter(|e| {
            *e == Endpoint::Healthz
                || opts.only.is_empty()
                || opts.only.iter().any(|o| o == e.key())
        })
        .collect();
    if let Some(unknown) = opts
        .only
        .iter()
        .find(|o| !Endpoint::ALL.iter().any(|e| e.key() == o.as_str()))
    {
        let keys: Vec<&str> = Endpoint::ALL.iter().map(|e| e.key()).collect();
        bail!(
            "--only {unknown}: no such endpoint (one of {})",
            keys.join(", ")
        );
    }
    ensure_tool("wrk", "wrk")?;
    if opts.callgrind {
        ensure_tool("valgrind", "valgrind")?;
    }
    let info = RunInfo {
        date: date(),
        commit: commit(),
        command: opts.command.clone(),
        machine: machine(),
        load: load_average(),
        secs,
    };
    let binary = build_release()?;
    let tmp = TempDir::new()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    // reqwest's rustls has no crypto provider of its own (the workspace's Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build an HTTP client")?;

    let mock_port = free_port()?;
    let mock = format!("http://127.0.0.1:{mock_port}");
    let _mock_proc = Proc::spawn(
        "mock WeChat",
        base_command(&binary, &tmp.0)
            .args(["mock-wechat", "--addr"])
            .arg(format!("127.0.0.1:{mock_port}"))
            .args(["--app-id", APP_ID])
            .env("WXLOGIN_MOCK_APP_SECRET", APP_SECRET),
        &tmp.0.join("mock.log"),
    )?;
    rt.block_on(wait_up(&client, &format!("{mock}/mock/stats"), 30))?;

    let env = Env {
        binary: &binary,
        tmp: &tmp.0,
        client: &client,
        rt: &rt,
        mock: &mock,
        users: if opts.quick { QUICK_USERS } else { USERS },
        secs,
        endpoints: &endpoints,
    };

    let mut results = Vec::new();
    if opts.sqlite {
        let url = format!(
            "sqlite://{}?mode=rwc",
            tmp.0.join("bench-sqlite.db").display()
        );
        results.push(bench_store(&env, Store::Sqlite, &url)?);
    }
    if opts.postgres {
        match postgres::acquire()? {
            Some(pg) => {
                let db = PgDatabase::create(pg.admin_url())?;
                results.push(bench_store(&env, Store::Postgres, &db.url)?);
                drop(db);
                drop(pg);
            }
            None if opts.sqlite => eprintln!(
                "\n!!!!! xtask bench: no Postgres to be had (see `cargo xtask test`): the \
                 Postgres half is SKIPPED\n"
            ),
            None => bail!("no Postgres to be had: set WXLOGIN_TEST_POSTGRES_URL or install one"),
        }
    }
    let callgrind = if opts.callgrind {
        Some(callgrind(&env, opts.quick)?)
    } else {
        None
    };

    let mut report = String::new();
    for result in &results {
        report.push_str(&store_section(result, &info, opts.quick));
    }
    if let Some(cg) = &callgrind {
        report.push_str(&callgrind_section(cg, &info));
    }
    println!("\n{report}");

    if opts.write && opts.only.is_empty() {
        let doc_path = crate::project_root().join("docs/benchmarks.md");
        let mut doc = fs::read_to_string(&doc_path).unwrap_or_else(|_| DOC_SKELETON.to_owned());
        for result in &results {
            doc = replace_section(
                &doc,
                result.store.key(),
                &store_section(result, &info, opts.quick),
            );
        }
        if let Some(cg) = &callgrind {
            doc = replace_section(&doc, "callgrind", &callgrind_section(cg, &info));
        }
        fs::write(&doc_path, &doc)
            .with_context(|| format!("cannot write {}", doc_path.display()))?;
        eprintln!("xtask: wrote docs/benchmarks.md");
        if opts.svg || !opts.quick {
            let svg_path = crate::project_root().join("docs/benchmarks.svg");
            chart(&svg_path, &chart_data(&doc))?;
            eprintln!("xtask: wrote docs/benchmarks.svg");
        }
    }
    eprintln!(
        "xtask: bench finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What every step needs.
struct Env<'a> {
    binary: &'a Path,
    tmp: &'a Path,
    client: &'a reqwest::Client,
    rt: &'a tokio::runtime::Runtime,
    mock: &'a str,
    users: usize,
    secs: u64,
    endpoints: &'a [Endpoint],
}

/// Runs every endpoint against a fresh server on `db_url`.
fn bench_store(env: &Env<'_>, store: Store, db_url: &str) -> anyhow::Result<StoreResult> {
    eprintln!("\nxtask: bench on {}", store.name());
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let log = env.tmp.join(format!("server-{}.log", store.key()));
    let server = Proc::spawn(
        "server",
        &mut server_command(env, env.binary.as_os_str(), port, db_url),
        &log,
    )?;
    env.rt
        .block_on(wait_up(env.client, &format!("{base}/readyz"), 60))?;
    let pid = server.id();

    // The users the load needs, logged in once before it starts.
    let users = env.users;
    let returning = env
        .rt
        .block_on(mint(env, "codes", "o-ret-", users, users))?;
    env.rt.block_on(login_all(env, &base, returning))?;
    let codes = env
        .rt
        .block_on(mint(env, "codes", "o-tok-", users, users))?;
    let tokens = env.rt.block_on(login_all(env, &base, codes))?;
    let payloads = env.rt.block_on(encrypt_all(env, "o-tok-", users))?;
    eprintln!("xtask: {users} returning users and {users} signed-in users ready");

    let files = env.tmp.join(store.key());
    fs::create_dir_all(&files)?;
    let update: Vec<String> = tokens
        .iter()
        .zip(&payloads)
        .map(|(token, (data, iv))| {
            format!(
                "\tencryptedData={}&iv={}&token={}",
                form_encode(data),
                form_encode(iv),
                form_encode(token)
            )
        })
        .collect();
    let me: Vec<String> = tokens.iter().map(|t| format!("{t}\t")).collect();
    // Two different profiles per token, one after the other, so every request changes it.
    let profile: Vec<String> = tokens
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            [
                format!("{t}\t{}", json!({"nickName": format!("bench a{i}")})),
                format!(
                    "{t}\t{}",
                    json!({"nickName": format!("bench b{i}"), "city": "Shenzhen"})
                ),
            ]
        })
        .collect();

    let mut rss_per_endpoint = true;
    let mut rows: Vec<Row> = Vec::new();
    for &endpoint in env.endpoints {
        let healthz_rps = rows.first().map_or(0.0, |r| r.rps);
        // Enough codes for half the ceiling's rate (twice the highest target); a run that
        // spends them all is thrown away and repeated with enough for 1.5 times the ceiling,
        // which no login reaches (it does all /healthz does and more).
        let budgets = [0.5, 1.5];
        let mut attempt = 0;
        let row = loop {
            let file = files.join(format!("{}.txt", endpoint.key()));
            let budget = budgets[attempt];
            let count = (healthz_rps * env.secs as f64 * budget).clamp(2_000.0, MAX_CODES) as usize;
            let lines = match endpoint {
                Endpoint::Healthz => None,
                Endpoint::LoginNew => {
                    let prefix = format!("o-new-{}-{attempt}-", store.key());
                    let codes = env.rt.block_on(mint(env, "codes", &prefix, count, count))?;
                    Some(codes.iter().map(|c| format!("\tcode={c}")).collect())
                }
                Endpoint::LoginReturning => {
                    let codes = env
                        .rt
                        .block_on(mint(env, "codes", "o-ret-", count, users))?;
                    Some(codes.iter().map(|c| format!("\tcode={c}")).collect())
                }
                Endpoint::Phone => {
                    let codes =
                        env.rt
                            .block_on(mint(env, "phone-codes", "o-tok-", count, users))?;
                    Some(
                        codes
                            .iter()
                            .enumerate()
                            .map(|(i, c)| format!("{}\t{}", tokens[i % users], json!({"code": c})))
                            .collect(),
                    )
                }
                Endpoint::UpdateUserInfo => Some(update.clone()),
                Endpoint::Me => Some(me.clone()),
                Endpoint::Profile => Some(profile.clone()),
            };
            if let Some(lines) = &lines {
                write_lines(&file, lines)?;
            }
            let reset = reset_peak_rss(pid);
            rss_per_endpoint &= reset;
            truncate(&log)?;
            let out = wrk(env, &base, endpoint, lines.as_ref().map(|_| file.as_path()))?;
            let exhausted = out["exhausted"].as_u64().unwrap_or(0);
            if exhausted > 0 {
                attempt += 1;
                if attempt < budgets.len() {
                    eprintln!(
                        "xtask: {}: the {count} codes ran out; measuring again with more",
                        endpoint.label()
                    );
                    continue;
                }
                bail!(
                    "{} on {}: the {count} pre-minted codes ran out before the end of the run \
                     (more than 1.5 times /healthz's rate?): no figure is reported",
                    endpoint.label(),
                    store.name()
                );
            }
            let requests = out["requests"].as_u64().unwrap_or(0);
            let duration_s = out["duration_us"].as_f64().unwrap_or(1.0) / 1e6;
            let errors = ["connect", "read", "write", "status", "timeout"]
                .iter()
                .map(|k| out[k].as_u64().unwrap_or(0))
                .sum::<u64>();
            break Row {
                endpoint,
                requests,
                rps: requests as f64 / duration_s,
                p50_ms: out["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
                p99_ms: out["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
                errors,
                peak_rss_mib: peak_rss_kib(pid).map(|kib| kib as f64 / 1024.0),
            };
        };
        let ratio = rows.first().map_or(1.0, |h| row.rps / h.rps);
        eprintln!(
            "xtask: {:<9} {:<36} {:>9} req/s  ratio {:.3}  p50 {:.2} ms  p99 {:.2} ms  \
             errors {}  peak RSS {}",
            store.name(),
            endpoint.label(),
            thousands(row.rps),
            ratio,
            row.p50_ms,
            row.p99_ms,
            row.errors,
            row.peak_rss_mib
                .map_or_else(|| "?".to_owned(), |m| format!("{m:.1} MiB")),
        );
        if row.errors > 0 {
            report_refusals(&log, &refusals(&log));
        }
        rows.push(row);
    }
    drop(server);
    Ok(StoreResult {
        store,
        rows,
        rss_per_endpoint,
    })
}

/// The server, configured by environment alone, with the default limits and timeouts.
fn server_command(env: &Env<'_>, program: &std::ffi::OsStr, port: u16, db_url: &str) -> Command {
    let mut cmd = Command::new(program);
    clean_env(&mut cmd, env.tmp);
    cmd.env("WXLOGIN__SERVER__ADDR", format!("127.0.0.1:{port}"))
        .env("WXLOGIN__DATABASE__URL", db_url)
        .env("WXLOGIN__WECHAT__MODE", "http")
        .env("WXLOGIN__WECHAT__BASE_URL", env.mock)
        .env("WXLOGIN__WECHAT__APP_ID", APP_ID)
        .env("WXLOGIN__WECHAT__APP_SECRET", APP_SECRET);
    cmd
}

fn base_command(binary: &Path, tmp: &Path) -> Command {
    let mut cmd = Command::new(binary);
    clean_env(&mut cmd, tmp);
    cmd
}

/// No configuration of the developer's leaks in: no `wxlogin.toml` (the working directory is
/// the bench's own), no `WXLOGIN*` variables, no `RUST_LOG`. Logs stay at the default level
/// (`info`, a line per request), uncoloured.
fn clean_env(cmd: &mut Command, tmp: &Path) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("WXLOGIN") || key == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(tmp).env("NO_COLOR", "1");
}

/// Runs wrk on one endpoint and returns the last line of its script (see wrk.lua).
fn wrk(
    env: &Env<'_>,
    base: &str,
    endpoint: Endpoint,
    file: Option<&Path>,
) -> anyhow::Result<Value> {
    let (method, path, content_type) = endpoint.request();
    let script = crate::project_root().join("xtask/bench/wrk.lua");
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string()])
        .args(["-d", &format!("{}s", env.secs), "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(format!("{base}{path}"))
        .env("WXBENCH_METHOD", method)
        .env("WXBENCH_PATH", path)
        .env("WXBENCH_TYPE", content_type)
        .env(
            "WXBENCH_ONCE",
            if endpoint.single_use() { "1" } else { "0" },
        )
        .env("WXBENCH_THREADS", THREADS.to_string())
        .env_remove("WXBENCH_FILE");
    if let Some(file) = file {
        cmd.env("WXBENCH_FILE", file);
    }
    let out = cmd.output().context("cannot run wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WXBENCH "))
        .ok_or_else(|| {
            anyhow!(
                "wrk on {} printed no result ({}):\n{stdout}{}",
                endpoint.label(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    serde_json::from_str(line).with_context(|| format!("wrk's result line {line:?}"))
}

/// Mints `count` codes of the mock's control API for openids `{prefix}{i % users}`; `kind` is
/// `codes` (login) or `phone-codes`.
async fn mint(
    env: &Env<'_>,
    kind: &str,
    prefix: &str,
    count: usize,
    users: usize,
) -> anyhow::Result<Vec<String>> {
    let mut body = json!({"openIdPrefix": prefix, "count": count, "users": users});
    if kind == "phone-codes" {
        body["phoneNumber"] = "13800138000".into();
    }
    let reply: Value = env
        .client
        .post(format!("{}/mock/{kind}/batch", env.mock))
        .json(&body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("minting {count} {kind}"))?
        .json()
        .await?;
    let codes: Vec<String> = serde_json::from_value(reply["codes"].clone())
        .with_context(|| format!("the mock's batch of {kind}"))?;
    if codes.len() != count {
        bail!("asked the mock for {count} {kind}, got {}", codes.len());
    }
    Ok(codes)
}

/// Logs in with every code, 16 at a time; the tokens in the codes' order.
async fn login_all(env: &Env<'_>, base: &str, codes: Vec<String>) -> anyhow::Result<Vec<String>> {
    let url = format!("{base}/onLogin");
    let client = env.client.clone();
    in_parallel(codes, move |code| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let reply: Value = client
                .post(&url)
                .form(&[("code", code)])
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .context("a login before the load")?
                .json()
                .await?;
            reply["token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("a login answered no token: {reply}"))
        }
    })
    .await
}

/// A profile for each of `{prefix}{i}` encrypted by the mock with the user's current key:
/// `(encryptedData, iv)` in order.
async fn encrypt_all(
    env: &Env<'_>,
    prefix: &str,
    users: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let url = format!("{}/mock/encrypt", env.mock);
    let client = env.client.clone();
    let prefix = prefix.to_owned();
    in_parallel((0..users).collect(), move |i| {
        let client = client.clone();
        let url = url.clone();
        let body = json!({
            "openId": format!("{prefix}{i}"),
            "userInfo": {
                "nickName": format!("bench user {i}"),
                "avatarUrl": "https://example.com/avatar.png",
                "gender": 1, "country": "China", "province": "Guangdong", "city": "Shenzhen",
                "language": "zh_CN",
            },
        });
        async move {
            let reply: Value = client
                .post(&url)
                .json(&body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .context("encrypting a profile")?
                .json()
                .await?;
            match (reply["encryptedData"].as_str(), reply["iv"].as_str()) {
                (Some(data), Some(iv)) => Ok((data.to_owned(), iv.to_owned())),
                _ => Err(anyhow!("the mock's encrypt answered {reply}")),
            }
        }
    })
    .await
}

/// `f` over every item, 16 at a time, results in the items' order.
async fn in_parallel<T, R, F, Fut>(items: Vec<T>, f: F) -> anyhow::Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<R>> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    let count = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await?;
        let job = f(item);
        tasks.spawn(async move {
            let result = job.await;
            drop(permit);
            (i, result)
        });
    }
    let mut out: Vec<Option<R>> = (0..count).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done?;
        out[i] = Some(result?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Polls `url` until it answers 200.
async fn wait_up(client: &reqwest::Client, url: &str, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Instructions per login and per `/me` under callgrind, on SQLite (in process, so the
/// database's work is counted; Postgres would do its share in another process).
fn callgrind(env: &Env<'_>, quick: bool) -> anyhow::Result<CallgrindResult> {
    let started = Instant::now();
    let (n1, n2) = if quick {
        QUICK_CALLGRIND_N
    } else {
        CALLGRIND_N
    };
    eprintln!("\nxtask: callgrind ({n1} and {n2} requests, the server under valgrind)");
    // Three runs: the difference of the first two is N2 - N1 logins, of the first and third
    // N2 - N1 /me requests; start-up and shutdown cancel out. They run side by side (an
    // instruction count does not depend on how fast the machine is).
    let plan = [(n1, n1), (n2, n1), (n1, n2)];
    let mut runs = Vec::new();
    for run in 0..plan.len() {
        runs.push(CallgrindRun::start(env, run)?);
    }
    env.rt.block_on(async {
        tokio::try_join!(
            runs[0].drive(env, plan[0]),
            runs[1].drive(env, plan[1]),
            runs[2].drive(env, plan[2]),
        )
    })?;
    for run in &mut runs {
        run.server.signal_term()?;
    }
    let mut totals = Vec::new();
    for (run, (logins, mes)) in runs.iter_mut().zip(plan) {
        let total = run.finish()?;
        eprintln!(
            "xtask: callgrind: {logins} logins and {mes} /me: {} instructions",
            thousands(total as f64)
        );
        totals.push(total as f64);
    }
    let span = (n2 - n1) as f64;
    eprintln!(
        "xtask: callgrind took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(CallgrindResult {
        n: (n1, n2),
        login: (totals[1] - totals[0]) / span,
        me: (totals[2] - totals[0]) / span,
    })
}

/// One server under callgrind on a fresh SQLite file.
struct CallgrindRun {
    run: usize,
    server: Proc,
    base: String,
    out_file: PathBuf,
}

impl CallgrindRun {
    fn start(env: &Env<'_>, run: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let out_file = env.tmp.join(format!("callgrind.{run}.out"));
        let db = env.tmp.join(format!("callgrind-{run}.db"));
        let mut cmd = server_command(
            env,
            std::ffi::OsStr::new("valgrind"),
            port,
            &format!("sqlite://{}?mode=rwc", db.display()),
        );
        // One worker thread and valgrind's fair scheduling: threads that spin-wait for one
        // another (idle workers searching for work, the SQLite worker's channel) otherwise
        // spin for as long as valgrind's time slice lets them, and the count follows timing.
        cmd.env("TOKIO_WORKER_THREADS", "1")
            .args(["--tool=callgrind", "--fair-sched=yes", "-q"])
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(env.binary);
        let server = Proc::spawn(
            "server under callgrind",
            &mut cmd,
            &env.tmp.join(format!("callgrind-{run}.log")),
        )?;
        Ok(Self {
            run,
            server,
            base: format!("http://127.0.0.1:{port}"),
            out_file,
        })
    }

    /// `logins` new-user logins, then `mes` `GET /api/v1/me`, one at a time.
    async fn drive(&self, env: &Env<'_>, (logins, mes): (u64, u64)) -> anyhow::Result<()> {
        let base = &self.base;
        wait_up(env.client, &format!("{base}/readyz"), 180).await?;
        let prefix = format!("o-cg-{}-", self.run);
        let codes = mint(env, "codes", &prefix, logins as usize, logins as usize).await?;
        let mut token = None;
        for code in codes {
            let reply: Value = env
                .client
                .post(format!("{base}/onLogin"))
                .form(&[("code", code)])
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .context("a login under callgrind")?
                .json()
                .await?;
            token.get_or_insert(reply["token"].as_str().unwrap_or_default().to_owned());
        }
        let token = token.unwrap_or_default();
        for _ in 0..mes {
            env.client
                .get(format!("{base}/api/v1/me"))
                .bearer_auth(&token)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .context("GET /api/v1/me under callgrind")?;
        }
        Ok(())
    }

    /// Waits for the server to exit (callgrind writes its counts on the way out) and returns
    /// its total instruction count.
    fn finish(&mut self) -> anyhow::Result<u64> {
        self.server.wait_exit()?;
        let out_file = &self.out_file;
        let text = fs::read_to_string(out_file)
            .with_context(|| format!("callgrind wrote no {}", out_file.display()))?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no instruction total in {}", out_file.display()))
    }
}

// ---- the report ----

fn store_section(result: &StoreResult, info: &RunInfo, quick: bool) -> String {
    let store = result.store;
    let mut s = String::new();
    let _ = writeln!(s, "### {}\n", store.name());
    let _ = writeln!(
        s,
        "{} s per endpoint{}, {CONNECTIONS} connections from wrk's {THREADS} threads, \
         loopback. Measured {} at commit {} with `{}` on {} (load average {} at the start).\n",
        info.secs,
        if quick { " (`--quick`)" } else { "" },
        info.date,
        info.commit,
        info.command,
        info.machine,
        info.load,
    );
    s.push_str(
        "| endpoint | req/s | ratio to /healthz | target | p50 | p99 | errors | peak RSS | \
         targets met |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let ceiling = result.rows.first().map_or(0.0, |r| r.rps);
    let mut data = serde_json::Map::new();
    for row in &result.rows {
        let ratio = if ceiling > 0.0 {
            row.rps / ceiling
        } else {
            0.0
        };
        let target = row.endpoint.ratio_target(store);
        let mut missed = Vec::new();
        if target.is_some_and(|t| ratio < t) {
            missed.push("ratio");
        }
        if row.p99_ms > P99_TARGET_MS {
            missed.push("p99");
        }
        if row.errors > 0 {
            missed.push("errors");
        }
        if row.peak_rss_mib.is_some_and(|m| m > RSS_TARGET_MIB) {
            missed.push("RSS");
        }
        let met = if missed.is_empty() {
            "✓".to_owned()
        } else {
            format!("✗ {}", missed.join(", "))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {} | {:.2} ms | {:.2} ms | {} | {} | {} |",
            row.endpoint.label(),
            thousands(row.rps),
            ratio,
            target.map_or_else(|| "—".to_owned(), |t| format!("≥ {t:.2}")),
            row.p50_ms,
            row.p99_ms,
            if row.errors == 0 {
                "0".to_owned()
            } else {
                format!(
                    "{} of {}",
                    thousands(row.errors as f64),
                    thousands(row.requests as f64)
                )
            },
            row.peak_rss_mib
                .map_or_else(|| "?".to_owned(), |m| format!("{m:.1} MiB")),
            met,
        );
        data.insert(
            row.endpoint.key().to_owned(),
            json!((ratio * 1000.0).round() / 1000.0),
        );
    }
    let _ = writeln!(
        s,
        "\nTargets everywhere: p99 ≤ {P99_TARGET_MS} ms, zero errors (any non-2xx answer, \
         connect/read/write error or 10 s timeout), peak RSS ≤ {RSS_TARGET_MIB} MiB ({}).",
        if result.rss_per_endpoint {
            "VmHWM, reset before each endpoint"
        } else {
            "VmHWM of the process so far: this kernel could not reset it per endpoint"
        }
    );
    let _ = writeln!(
        s,
        "<!-- xtask bench data {} -->\n",
        json!({"store": store.key(), "ratios": data})
    );
    s
}

fn callgrind_section(cg: &CallgrindResult, info: &RunInfo) -> String {
    let (n1, n2) = cg.n;
    format!(
        "### Instructions per request (callgrind)\n\n\
         The release binary on SQLite under `valgrind --tool=callgrind --fair-sched=yes` with \
         one tokio worker, requests sent one at a time over one keep-alive connection; each figure is (Ir(N2) − Ir(N1)) / (N2 − N1) \
         with N1 = {n1} and N2 = {n2}, so start-up and shutdown cancel out. Only the server's \
         instructions count (SQLite runs in it; the mock WeChat runs outside valgrind). \
         Measured {} at commit {} with `{}`.\n\n\
         | request | instructions per request |\n|---|---:|\n\
         | {} | {} |\n| {} | {} |\n",
        info.date,
        info.commit,
        info.command,
        Endpoint::LoginNew.label(),
        thousands(cg.login),
        Endpoint::Me.label(),
        thousands(cg.me),
    )
}

fn begin_marker(key: &str) -> String {
    format!("<!-- xtask bench {key}: begin (generated by `cargo xtask bench`; edits are lost) -->")
}

fn end_marker(key: &str) -> String {
    format!("<!-- xtask bench {key}: end -->")
}

/// `doc` with the section `key` (between its markers) replaced by `body`; appended when the
/// markers are missing. Everything outside the markers is kept.
fn replace_section(doc: &str, key: &str, body: &str) -> String {
    let begin = begin_marker(key);
    let end = end_marker(key);
    let section = format!("{begin}\n{body}{end}");
    if let Some(start) = doc.find(&begin)
        && let Some(stop) = doc[start..].find(&end)
    {
        let stop = start + stop + end.len();
        return format!("{}{section}{}", &doc[..start], &doc[stop..]);
    }
    let mut out = doc.trim_end().to_owned();
    out.push_str("\n\n");
    out.push_str(&section);
    out.push('\n');
    out
}

/// The ratios of every store section in `doc`, from their data comments.
fn chart_data(doc: &str) -> Vec<(Store, BTreeMap<String, f64>)> {
    let mut out = Vec::new();
    for line in doc.lines() {
        let Some(data) = line
            .strip_prefix("<!-- xtask bench data ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        let Some(store) = value["store"].as_str().and_then(Store::from_key) else {
            continue;
        };
        let ratios = value["ratios"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        out.push((store, ratios));
    }
    out.sort_by_key(|(store, _)| *store);
    out
}

/// Grouped bars of each endpoint's ratio to `/healthz`, one bar per store, the issue's
/// targets as black marks.
fn chart(path: &Path, data: &[(Store, BTreeMap<String, f64>)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let endpoints: Vec<Endpoint> = Endpoint::ALL[1..].to_vec();
    let colours = [RGBColor(52, 114, 196), RGBColor(214, 96, 56)];
    let mut top: f64 = 0.7;
    for (store, ratios) in data {
        for e in &endpoints {
            top = top
                .max(ratios.get(e.key()).copied().unwrap_or(0.0))
                .max(e.ratio_target(*store).unwrap_or(0.0));
        }
    }
    let top = (top * 1.15 * 10.0).ceil() / 10.0;
    let root = SVGBackend::new(path, (960, 520)).into_drawing_area();
    let draw = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the chart: {e}");
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Requests/s as a ratio to /healthz in the same run (64 connections)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..endpoints.len() as f64, 0f64..top)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(endpoints.len())
        .x_label_formatter(&|_| String::new())
        .y_desc("ratio to /healthz")
        .draw()
        .map_err(draw)?;
    let slots = data.len().max(1) as f64;
    let width = 0.7 / slots;
    for (s, (store, ratios)) in data.iter().enumerate() {
        let colour = colours[s % colours.len()];
        let left = |i: usize| i as f64 + 0.15 + s as f64 * width;
        let bars: Vec<(usize, f64)> = endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, *ratios.get(e.key())?)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(i, v)| {
                Rectangle::new(
                    [(left(i), 0.0), (left(i) + width * 0.9, v)],
                    colour.filled(),
                )
            }))
            .map_err(draw)?
            .label(store.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        let above = TextStyle::from(("sans-serif", 12).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(bars.iter().map(|&(i, v)| {
                Text::new(
                    format!("{v:.2}"),
                    (left(i) + width * 0.45, v + top * 0.01),
                    above.clone(),
                )
            }))
            .map_err(draw)?;
        let marks: Vec<(usize, f64)> = endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.ratio_target(*store)?)))
            .collect();
        let series = chart
            .draw_series(marks.iter().map(|&(i, t)| {
                PathElement::new(
                    vec![(left(i) - 0.02, t), (left(i) + width * 0.9 + 0.02, t)],
                    BLACK.stroke_width(3),
                )
            }))
            .map_err(draw)?;
        if s + 1 == data.len() {
            series.label("target").legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(3))
            });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    let below =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, e) in endpoints.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(e.short(), (x, y + 8), below.clone()))
            .map_err(draw)?;
    }
    root.present().map_err(draw)?;
    Ok(())
}

/// The hand-written part of a new docs/benchmarks.md; runs fill in the sections.
const DOC_SKELETON: &str = "# Benchmarks\n\nGenerated by `cargo xtask bench`.\n";

// ---- processes, files, the machine ----

/// A child process, killed when dropped.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Self { name, child })
    }

    fn id(&self) -> u32 {
        self.child.id()
    }

    /// Asks the process to stop (SIGTERM: the server drains and exits cleanly).
    fn signal_term(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.name);
        }
        Ok(())
    }

    /// Waits up to two minutes for a successful exit.
    fn wait_exit(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the {} exited with {status}", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the {} did not stop within 120 s of SIGTERM", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The bench's scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("wxlogin-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A throwaway database on the Postgres `postgres::acquire` found, dropped when dropped.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("wxlogin_bench_{}", std::process::id());
        postgres::psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        postgres::psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: postgres::with_database(admin_url, &name),
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = postgres::psql(&self.admin_url, &sql) {
            eprintln!(
                "xtask: could not drop the bench database {}: {e:#}",
                self.name
            );
        }
    }
}

/// Builds the release binary, or takes `WXLOGIN_BENCH_BINARY` (a binary built before, to
/// compare two builds back to back; a filtered run, `--only`, is the place for that).
fn build_release() -> anyhow::Result<PathBuf> {
    if let Some(binary) = std::env::var_os("WXLOGIN_BENCH_BINARY") {
        let binary = PathBuf::from(binary);
        if !binary.is_file() {
            bail!("WXLOGIN_BENCH_BINARY: no file {}", binary.display());
        }
        return Ok(binary);
    }
    let mut cmd = crate::cargo();
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--package",
        "wxlogin-server",
        "--bin",
        "wxlogin",
    ]);
    crate::run(cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"));
    let binary = target.join("release/wxlogin");
    if !binary.is_file() {
        bail!("the release build left no {}", binary.display());
    }
    Ok(binary)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Installs Debian's `package` when `tool` is missing: apt-get, non-interactive, with
/// `sudo -n` when not root; a clear error when that cannot work.
fn ensure_tool(tool: &str, package: &str) -> anyhow::Result<()> {
    if on_path(tool) {
        return Ok(());
    }
    if !on_path("apt-get") {
        bail!("{tool} is not installed and there is no apt-get here: install {package} yourself");
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root && !on_path("sudo") {
        bail!(
            "{tool} is not installed, and installing it needs root: run \
             `sudo apt-get install -y {package}`"
        );
    }
    eprintln!("xtask: {tool} is missing: installing Debian's {package}");
    let apt = |args: &[&str]| -> bool {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    };
    let installed = apt(&["install", "-y", "-q", package])
        || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", package]));
    if !installed || !on_path(tool) {
        bail!(
            "{tool} is missing and `apt-get install -y {package}` failed{}: install it and \
             run again",
            if root {
                ""
            } else {
                " (sudo -n: is a password needed?)"
            }
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?.port())
}

/// Resets the process's peak RSS (VmHWM) to its current RSS; false where the kernel refuses.
fn reset_peak_rss(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Empties the server's log (opened for appending, so it writes on at the new end).
fn truncate(log: &Path) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(log)
        .and_then(|f| f.set_len(0))
        .with_context(|| format!("cannot truncate {}", log.display()))
}

/// The error codes the server logged as refusals in this endpoint's run, with their counts.
fn refusals(log: &Path) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    let Ok(file) = File::open(log) else {
        return kinds;
    };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if line.contains(" WARN ") || line.contains(" ERROR ") || line.contains("refused") {
            let kind = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("error="))
                .unwrap_or(if line.contains(" ERROR ") {
                    "ERROR"
                } else {
                    "WARN"
                });
            *kinds.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }
    kinds
}

fn report_refusals(log: &Path, kinds: &BTreeMap<String, u64>) {
    if kinds.is_empty() {
        eprintln!(
            "xtask:   (the server logged no refusal: the errors are wrk's own, see {})",
            log.display()
        );
    }
    for (kind, n) in kinds {
        eprintln!("xtask:   the server logged {n} × {kind}");
    }
}

/// application/x-www-form-urlencoded value encoding.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// 12345.6 → "12,346".
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(crate::project_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn date() -> String {
    command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".to_owned())
}

fn commit() -> String {
    let hash = command_output("git", &["rev-parse", "--short=12", "HEAD"])
        .unwrap_or_else(|| "unknown".to_owned());
    // The bench's own outputs do not count as changes to what was measured.
    let dirty = command_output(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!docs/benchmarks.md",
            ":!docs/benchmarks.svg",
        ],
    )
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("`{hash}` plus uncommitted changes")
    } else {
        format!("`{hash}`")
    }
}

/// "2 × CPU model, 24 GiB, Linux 6.1.0": nproc, /proc/cpuinfo, /proc/meminfo, the kernel.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.0}", kib / 1024.0 / 1024.0),
        );
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    format!("{cores} × {cpu}, {mem_gib} GiB memory, Linux {kernel}")
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_replaces_only_its_own_section() {
        let doc = "# Benchmarks\n\nHand-written.\n";
        let doc = replace_section(doc, "sqlite", "first\n");
        let doc = replace_section(&doc, "postgres", "pg\n");
        assert!(doc.starts_with("# Benchmarks\n\nHand-written.\n\n"));
        let edited = doc + "\nMore hand-written text.\n";
        let again = replace_section(&edited, "sqlite", "second\n");
        assert!(again.contains("second\n") && !again.contains("first\n"));
        assert!(again.contains("pg\n"));
        assert!(again.ends_with("\nMore hand-written text.\n"));
        assert_eq!(again.matches(&begin_marker("sqlite")).count(), 1);
    }

    #[test]
    fn the_chart_reads_the_data_comments() {
        let doc = format!(
            "x\n<!-- xtask bench data {} -->\n<!-- xtask bench data {} -->\n",
            json!({"store": "postgres", "ratios": {"me": 0.1}}),
            json!({"store": "sqlite", "ratios": {"me": 0.3, "login_new": 0.03}}),
        );
        let data = chart_data(&doc);
        assert_eq!(data.len(), 2);
        assert_eq!(data[0].0, Store::Sqlite);
        assert_eq!(data[0].1.get("login_new"), Some(&0.03));
        let dir = TempDir::new().unwrap();
        let svg = dir.0.join("chart.svg");
        chart(&svg, &data).unwrap();
        let text = fs::read_to_string(&svg).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("GET /me"),
            "{text}"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(38_123.6), "38,124");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(form_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
