//! `cargo xtask …`: project automation in Rust (matklad's cargo-xtask pattern). Few
//! dependencies; shells out to the `cargo` that invoked it.

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
    /// Run every test suite (unit, adapter, end-to-end) against the chosen adapters.
    Test {
        /// Which store adapter the suites run against.
        #[arg(long, value_enum, default_value_t = Store::All)]
        store: Store,
        /// Extra arguments passed to `cargo test` (after `--`).
        #[arg(last = true)]
        rest: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Store {
    /// SQLite (embedded; always available).
    Sqlite,
    /// Every store this build supports.
    All,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Test { store, rest } => test(store, &rest),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn run(mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test(store: Store, rest: &[String]) -> anyhow::Result<()> {
    // SQLite is the only store so far; `all` and `sqlite` run the same suites. The store
    // adapter's own tests use real SQLite files, and the end-to-end crate starts the real
    // server on a fresh SQLite file per test.
    match store {
        Store::Sqlite | Store::All => {}
    }
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-targets", "--locked"]);
    if !rest.is_empty() {
        cmd.arg("--").args(rest);
    }
    run(cmd)?;
    // Doc tests are not part of --all-targets.
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc", "--locked"]);
    run(doc)
}
