//! `cargo xtask fuzz-api`: schemathesis (PyPI, version 4) against the real `wxlogin` binary
//! on the embedded default (a fresh SQLite file, the in-process mock WeChat), reading the
//! server's own `/openapi.json`. schemathesis lives in a venv under the target dir; nothing
//! is installed into the system or the repository. docs/security.md ("API fuzzing
//! (schemathesis)") says what the run covers and why each exclusion is there.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

use crate::{cargo, project_root, run, target_dir};

/// The schemathesis release line the run is written for.
const SCHEMATHESIS: &str = "schemathesis>=4,<5";
/// The operator the run signs in as (`[[admin.users]]` of its own config).
const OPERATOR: &str = "fuzz-operator";

pub struct Options {
    pub examples: u32,
    pub seed: u64,
    pub workers: u32,
    pub rest: Vec<String>,
}

pub fn fuzz_api(opts: &Options) -> anyhow::Result<()> {
    let target = target_dir();
    let venv = target.join("schemathesis/venv");
    let st = install(&venv)?;

    // The debug build `cargo xtask test` made (no release build), with the same targets and
    // features as its Postgres pass, so that after it nothing is compiled again.
    let mut build = cargo();
    build.args([
        "build",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
    ]);
    run(build)?;
    let bin = target.join("debug/wxlogin");

    let work = Scratch::new(&target.join("schemathesis"))?;
    let password = format!("fuzz-{}-{}", std::process::id(), nanos());
    let hash = hash_password(&bin, &password)?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let config = work.0.join("wxlogin.toml");
    std::fs::write(&config, server_config(port, &work.0.join("fuzz.db"), &hash))?;

    let log = std::fs::File::create(work.0.join("server.log"))?;
    let child = Command::new(&bin)
        .args(["--config"])
        .arg(&config)
        .current_dir(&work.0)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut server = Server(child);
    if let Err(e) = wait_up(port, &mut server) {
        print_log(&work.0);
        return Err(e);
    }

    // A real token, minted the way a mini-program gets one: a code from the mock WeChat's
    // control API, exchanged at /api/v1/login.
    let code = field(
        &post_json(port, "/mock/codes", r#"{"openId":"o-fuzz"}"#)?,
        "code",
    )?;
    let login = post_json(port, "/api/v1/login", &format!(r#"{{"code":"{code}"}}"#))?;
    let token = field(&login, "token")?;

    let hooks_dir = project_root().join("xtask/schemathesis");
    let report = target.join("schemathesis/report");
    let mut cmd = Command::new(&st);
    cmd.arg("--config-file")
        .arg(hooks_dir.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{url}/openapi.json"))
        .args(["--checks", "all"])
        .args(["--seed", &opts.seed.to_string()])
        .args(["--max-examples", &opts.examples.to_string()])
        .args(["--workers", &opts.workers.to_string()])
        .args(["--request-timeout", "20"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        .args(&opts.rest)
        // Hypothesis keeps its example database in the working directory: the scratch one.
        .current_dir(&work.0)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &hooks_dir)
        .env("WXLOGIN_FUZZ_URL", &url)
        .env("WXLOGIN_FUZZ_TOKEN", &token)
        .env("WXLOGIN_FUZZ_OPERATOR", OPERATOR)
        .env("WXLOGIN_FUZZ_PASSWORD", &password);
    let started = Instant::now();
    let result = run(cmd);
    eprintln!(
        "xtask: schemathesis ran {:.0} s ({} examples per operation, seed {}); report in {}",
        started.elapsed().as_secs_f64(),
        opts.examples,
        opts.seed,
        report.display()
    );
    drop(server);
    if result.is_err() {
        print_log(&work.0);
    }
    result
}

fn print_log(work: &Path) {
    let log = std::fs::read_to_string(work.join("server.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    eprintln!("xtask: the server's last log lines:");
    for line in tail.iter().rev() {
        eprintln!("  {line}");
    }
}

/// The venv's `schemathesis`, installed first when missing.
fn install(venv: &Path) -> anyhow::Result<PathBuf> {
    let st = venv.join("bin/schemathesis");
    let works = |st: &Path| {
        Command::new(st)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(&st) {
        return Ok(st);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut mkvenv = Command::new(&python);
    mkvenv.args(["-m", "venv", "--clear"]).arg(venv);
    run(mkvenv).context("python3 -m venv (needs Python 3.10+ with venv and pip)")?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        SCHEMATHESIS,
    ]);
    run(pip)?;
    if !works(&st) {
        bail!("{} does not run after installing it", st.display());
    }
    Ok(st)
}

fn hash_password(bin: &Path, password: &str) -> anyhow::Result<String> {
    let mut child = Command::new(bin)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{password}")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("wxlogin hash-password failed with {}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The server's configuration for the run: the embedded default plus what fuzzing needs.
fn server_config(port: u16, db: &Path, password_hash: &str) -> String {
    format!(
        r#"# Written by `cargo xtask fuzz-api`.
[server]
addr = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}?mode=rwc"

# Fuzzing is one client address sending mostly failing requests: at the defaults (a burst of
# 50 failures, 10 a second) almost every answer would be 429 rate_limited and nothing behind it
# would be tested. The budgets are raised out of reach for this run (docs/security.md).
[limits]
failed_burst = 1000000000
failed_per_second = 1000000000
decrypt_failures_per_minute = 1000000000

[log]
filter = "warn"

[[admin.users]]
name = "{OPERATOR}"
password_hash = "{password_hash}"
"#,
        db = db.display()
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The running server, stopped when dropped (also on an error or a panic of the xtask).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory under the target dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(parent: &Path) -> anyhow::Result<Self> {
        let dir = parent.join(format!("run-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_up(port: u16, server: &mut Server) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if request(port, "GET", "/healthz", None).is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
            return Ok(());
        }
        if let Some(status) = server.0.try_wait()? {
            bail!("the server exited at start with {status} (its log is above)");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the server did not answer /healthz on port {port} within 30 s")
}

/// One HTTP/1.1 request over loopback (the xtask has no HTTP client of its own).
fn request(port: u16, method: &str, path: &str, json: Option<&str>) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = json.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

fn post_json(port: u16, path: &str, json: &str) -> anyhow::Result<String> {
    let answer = request(port, "POST", path, Some(json))?;
    if !answer.starts_with("HTTP/1.1 200") {
        bail!(
            "POST {path} answered {}",
            answer.lines().next().unwrap_or("")
        );
    }
    Ok(answer)
}

/// A string field of a JSON answer (codes and tokens hold no escapes).
fn field(answer: &str, name: &str) -> anyhow::Result<String> {
    let key = format!("\"{name}\":\"");
    let start = answer
        .find(&key)
        .map(|i| i + key.len())
        .with_context(|| format!("no {name} in the answer"))?;
    let len = answer[start..]
        .find('"')
        .with_context(|| format!("unterminated {name}"))?;
    Ok(answer[start..start + len].to_owned())
}
