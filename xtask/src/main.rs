//! `cargo xtask …`: project automation in Rust (matklad's cargo-xtask pattern). Few
//! dependencies; shells out to the `cargo` that invoked it.

mod bench;
mod fuzz;
mod fuzz_api;
mod postgres;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "xtask", about = "wxlogin's project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the unit, contract and end-to-end suites against the chosen adapters, the browser
    /// test (Swagger UI in headless Chromium) when chromium and chromedriver are found, and the
    /// mini-program helper's tests (`node --test apps/miniprogram/test/`) when node is found.
    Test {
        /// Which store the contract and end-to-end suites run against.
        #[arg(long, value_enum, default_value_t = StoreArg::All)]
        store: StoreArg,
        /// How the end-to-end suite reaches the mock WeChat: over real HTTP (the real client)
        /// or in process.
        #[arg(long, value_enum, default_value_t = WeChatArg::Http)]
        wechat: WeChatArg,
        /// Run every backend even after one failed, and report all failures at the end.
        #[arg(long)]
        keep_going: bool,
        /// Extra arguments passed to the test binaries (after `--`).
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// Regenerate docs/openapi.json from the code (a test checks it stays current).
    Openapi,
    /// Run the cargo-fuzz targets of tests/fuzz (installs cargo-fuzz when missing); fails on
    /// any crash, naming the saved input.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Run only this target (user_data, phone_data, token, request).
        #[arg(long)]
        target: Option<String>,
    },
    /// Fuzz the live server's API with schemathesis 4 (installed into the target dir when
    /// missing), every check, a fixed seed (docs/security.md, "API fuzzing").
    FuzzApi {
        /// Examples per operation (schemathesis `--max-examples`).
        #[arg(long, default_value_t = 1000)]
        examples: u32,
        /// The bounded run CI makes: 30 examples per operation (overrides `--examples`).
        #[arg(long)]
        quick: bool,
        /// schemathesis's (and Hypothesis's) seed: the same seed generates the same run.
        #[arg(long, default_value_t = 20_260_101)]
        seed: u64,
        /// Concurrent schemathesis workers. One by default: with several threads, CPython
        /// 3.11 fails inside schemathesis now and then ("AST constructor recursion depth
        /// mismatch"), which is schemathesis's error, not the server's.
        #[arg(long, default_value_t = 1)]
        workers: u32,
        /// Extra arguments passed to `schemathesis run` (after `--`).
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// Load-test the release binary on SQLite and Postgres (wrk, 64 connections, loopback),
    /// count instructions per request under callgrind, and write docs/benchmarks.md and
    /// docs/benchmarks.svg.
    Bench {
        /// Short runs (2 s per endpoint, fewer users, smaller callgrind runs): under a
        /// minute; docs/benchmarks.svg is left alone unless --svg.
        #[arg(long)]
        quick: bool,
        /// Seconds per endpoint (default 8, or 2 with --quick).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Which store the server runs on.
        #[arg(long, value_enum, default_value_t = StoreArg::All)]
        store: StoreArg,
        /// Skip the instruction counts under valgrind.
        #[arg(long)]
        no_callgrind: bool,
        /// Print the tables only; leave docs/ alone.
        #[arg(long)]
        no_write: bool,
        /// Redraw docs/benchmarks.svg with --quick too.
        #[arg(long)]
        svg: bool,
        /// Only these endpoints (after /healthz, always measured first), comma-separated:
        /// login_new, login_returning, update_user_info, me, profile, phone. Writes nothing.
        #[arg(long, value_delimiter = ',', value_name = "ENDPOINTS")]
        only: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreArg {
    Sqlite,
    Postgres,
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WeChatArg {
    Inproc,
    Http,
}

impl WeChatArg {
    fn as_env(self) -> &'static str {
        match self {
            Self::Inproc => "inproc",
            Self::Http => "http",
        }
    }
}

/// The test targets that run against Postgres: the store's contract and adapter tests
/// (`contract` also names SQLite's contract target, which runs again, cheaply), and every
/// end-to-end target (each one touches the store).
const POSTGRES_TARGETS: [&str; 21] = [
    "contract",
    "postgres",
    "login",
    "profile",
    "session",
    "api_v1",
    "phone",
    "multi_app",
    "http_surface",
    "wechat_faults",
    "wechat_network",
    "embedded_mock",
    "load",
    "two_instances",
    "admin",
    "strict",
    "limits",
    "connection_timeouts",
    "security",
    "database_faults",
    "avatar",
];

/// What the browser test needs, as Debian's `chromium` and `chromium-driver` install them.
const BROWSER_TOOLS: [&str; 2] = ["chromium", "chromedriver"];

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Test {
            store,
            wechat,
            keep_going,
            rest,
        } => test(store, wechat, keep_going, &rest),
        Cmd::FuzzApi {
            examples,
            quick,
            seed,
            workers,
            rest,
        } => fuzz_api::fuzz_api(&fuzz_api::Options {
            examples: if quick { 30 } else { examples },
            seed,
            workers,
            rest,
        }),
        Cmd::Openapi => {
            // The generator is the check itself, run with permission to write.
            let mut cmd = cargo();
            cmd.args([
                "test",
                "--workspace",
                "--locked",
                "--test",
                "http",
                "--",
                "the_checked_in_openapi_document_is_current",
            ])
            .env("WXLOGIN_UPDATE_OPENAPI", "1");
            run(cmd)?;
            eprintln!("xtask: wrote docs/openapi.json");
            Ok(())
        }
        Cmd::Fuzz { seconds, target } => fuzz::fuzz(seconds, target.as_deref()),
        Cmd::Bench {
            quick,
            duration,
            store,
            no_callgrind,
            no_write,
            svg,
            only,
        } => bench::run(&bench::Options {
            quick,
            duration,
            sqlite: matches!(store, StoreArg::Sqlite | StoreArg::All),
            postgres: matches!(store, StoreArg::Postgres | StoreArg::All),
            callgrind: !no_callgrind,
            write: !no_write,
            svg,
            only,
            command: std::iter::once("cargo xtask".to_owned())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" "),
        }),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn run(mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {}", describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", describe(&cmd)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(&cmd));
    }
    Ok(())
}

/// The command line without environment values (they may hold database URLs).
fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `name` on PATH, else in /usr/bin (where Debian puts chromium and chromedriver).
fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

fn with_rest(mut cmd: Command, rest: &[String]) -> Command {
    if !rest.is_empty() {
        cmd.arg("--").args(rest);
    }
    cmd
}

fn test(
    store: StoreArg,
    wechat: WeChatArg,
    keep_going: bool,
    rest: &[String],
) -> anyhow::Result<()> {
    let mut failures: Vec<String> = Vec::new();
    // Ok(false): the step failed and `--keep-going` goes on.
    let mut step = |name: &str, cmd: Command| -> anyhow::Result<bool> {
        match run(cmd) {
            Ok(()) => Ok(true),
            Err(e) if keep_going => {
                eprintln!("xtask: {name} FAILED: {e:#}");
                failures.push(name.to_owned());
                Ok(false)
            }
            Err(e) => Err(e.context(format!("{name} failed"))),
        }
    };

    // Everything that needs no server: unit and property tests, the crypto vectors, the
    // WeChat client against the mock over HTTP, the SQLite store (contract suite included),
    // and the end-to-end suite on SQLite.
    if matches!(store, StoreArg::Sqlite | StoreArg::All) {
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--all-targets", "--locked"])
            .env("WXLOGIN_TEST_STORE", "sqlite")
            .env("WXLOGIN_TEST_WECHAT", wechat.as_env());
        step("sqlite suites", with_rest(cmd, rest))?;
        let mut doc = cargo();
        doc.args(["test", "--workspace", "--doc", "--locked"]);
        step("doc tests", doc)?;
    }

    if matches!(store, StoreArg::Postgres | StoreArg::All) {
        match postgres::acquire()? {
            Some(pg) => {
                let url = pg.admin_url().to_owned();
                // The Postgres contract and adapter tests, and the end-to-end suite with
                // Postgres as its store. Selected by target name across the whole workspace
                // (not with `-p`), so dependencies keep the features of the first build and
                // nothing but our own crates is compiled again.
                let mut cmd = cargo();
                cmd.args(["test", "--workspace", "--all-features", "--locked"]);
                for target in POSTGRES_TARGETS {
                    cmd.args(["--test", target]);
                }
                cmd.env("WXLOGIN_TEST_STORE", "postgres")
                    .env("WXLOGIN_TEST_WECHAT", wechat.as_env())
                    .env("WXLOGIN_TEST_POSTGRES_URL", &url);
                step("postgres suites", with_rest(cmd, rest))?;
                drop(pg);
            }
            None => {
                let msg = "Postgres suites SKIPPED: no DATABASE_URL/WXLOGIN_TEST_POSTGRES_URL, \
                           nothing listening on 127.0.0.1:5432, and no initdb/pg_ctl found. \
                           Set WXLOGIN_TEST_POSTGRES_URL=postgres://… or install PostgreSQL \
                           (e.g. apt-get install postgresql) to run them.";
                if in_ci() {
                    bail!("{msg} (CI=true: a missing Postgres fails the run)");
                }
                eprintln!("\n!!!!! xtask: {msg}\n");
            }
        }
    }

    // Swagger UI in a real browser, once, whatever the store. `--all-features` as the Postgres
    // pass has it, so after that pass only this one test binary is compiled.
    let missing: Vec<&str> = BROWSER_TOOLS
        .into_iter()
        .filter(|tool| find_tool(tool).is_none())
        .collect();
    if missing.is_empty() {
        let mut cmd = cargo();
        cmd.args([
            "test",
            "--workspace",
            "--all-features",
            "--locked",
            "--test",
            "browser",
        ])
        .env("WXLOGIN_TEST_STORE", "sqlite");
        step("browser test", with_rest(cmd, rest))?;
    } else {
        let msg = format!(
            "browser test SKIPPED: {} not found (PATH or /usr/bin). Install them with \
             `apt-get install chromium chromium-driver` to run Swagger UI in headless Chromium.",
            missing.join(" and ")
        );
        if in_ci() {
            bail!("{msg} (CI=true: a missing browser fails the run)");
        }
        eprintln!("\n!!!!! xtask: {msg}\n");
    }

    // The mini-program helper (apps/miniprogram) with Node's own test runner, nothing to
    // install, against the debug binary. Built with the SQLite pass's selection, so after that
    // pass nothing is compiled again.
    if let Some(node) = find_tool("node") {
        let mut build = cargo();
        build.args(["build", "--workspace", "--all-targets", "--locked"]);
        if step("wxlogin binary", build)? {
            let mut cmd = Command::new(node);
            cmd.current_dir(project_root())
                .args(["--test", "apps/miniprogram/test/"])
                .env("WXLOGIN_BIN", target_dir().join("debug/wxlogin"));
            step("mini-program helper tests", cmd)?;
        }
    } else {
        let msg = "mini-program helper tests SKIPPED: node not found (PATH or /usr/bin). \
                   Install Node.js 18 or later (e.g. `apt-get install nodejs`) to run \
                   apps/miniprogram/test with `node --test`.";
        if in_ci() {
            bail!("{msg} (CI=true: a missing Node.js fails the run)");
        }
        eprintln!("\n!!!!! xtask: {msg}\n");
    }

    if failures.is_empty() {
        Ok(())
    } else {
        bail!("failed: {}", failures.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// End-to-end targets that do not run per store, each with the reason.
    const NOT_PER_STORE: [(&str, &str); 2] = [
        (
            "browser",
            "Swagger UI in headless Chromium: it proves the page, not the store, so it runs once \
             (on SQLite) in its own step when Chromium and chromedriver are installed",
        ),
        (
            "language",
            "the language of error messages is the HTTP layer's alone (the answers it checks \
             write nothing, or what the other targets check per store), so it runs once, in the \
             SQLite pass",
        ),
    ];

    /// A new end-to-end target must not silently skip Postgres.
    #[test]
    fn every_end_to_end_target_runs_on_postgres() {
        let dir = project_root().join("tests/e2e/tests");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let target = path.file_stem().unwrap().to_str().unwrap().to_owned();
                if NOT_PER_STORE.iter().any(|(name, _)| *name == target) {
                    continue;
                }
                assert!(
                    POSTGRES_TARGETS.contains(&target.as_str()),
                    "tests/e2e/tests/{target}.rs is not in POSTGRES_TARGETS"
                );
                seen += 1;
            }
        }
        assert!(seen > 0, "no end-to-end targets found in {}", dir.display());
    }

    /// An exception names a target that exists and does not also run per store.
    #[test]
    fn every_exception_from_the_postgres_pass_is_a_real_target() {
        for (target, reason) in NOT_PER_STORE {
            let path = project_root().join(format!("tests/e2e/tests/{target}.rs"));
            assert!(path.is_file(), "{} does not exist", path.display());
            assert!(
                !POSTGRES_TARGETS.contains(&target),
                "{target} is listed twice"
            );
            assert!(!reason.is_empty(), "{target} needs its reason");
        }
    }
}
