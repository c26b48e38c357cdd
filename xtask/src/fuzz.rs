//! `cargo xtask fuzz`: the cargo-fuzz targets of `tests/fuzz` (docs/security.md, "Fuzzing"),
//! each run for a while with libFuzzer's memory limits, on a copy of its committed corpus.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::{cargo, describe, project_root, run};

/// The targets, as `tests/fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 4] = ["user_data", "phone_data", "token", "request"];
const FUZZ_DIR: &str = "tests/fuzz";

/// libFuzzer's limits: the server's default body limit (`server.body_limit_bytes`, 64 KiB)
/// bounds an input, 64 MiB any single allocation, 512 MiB the process; 10 s one input.
const LIMITS: [&str; 5] = [
    "-max_len=65536",
    "-malloc_limit_mb=64",
    "-rss_limit_mb=512",
    "-timeout=10",
    "-print_final_stats=1",
];

pub fn fuzz(seconds: u64, target: Option<&str>) -> anyhow::Result<()> {
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target `{t}` (there are {})", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    ensure_cargo_fuzz()?;
    // Debug assertions on: an arithmetic overflow is a finding too. No sanitizer, so it builds
    // on the stable toolchain.
    let mut build = cargo();
    build.args(["fuzz", "build", "-s", "none", "-a", "--fuzz-dir", FUZZ_DIR]);
    if let [one] = targets.as_slice() {
        build.arg(one);
    }
    run(build)?;

    let root = project_root();
    let mut crashed = Vec::new();
    for target in targets {
        // libFuzzer adds what it finds to the corpus it is given: a copy, so the committed
        // seeds stay as they are (`corpus-run/` is ignored by git).
        let seeds = root.join(FUZZ_DIR).join("corpus").join(target);
        let work = root.join(FUZZ_DIR).join("corpus-run").join(target);
        copy_fresh(&seeds, &work)?;
        let artifacts = root.join(FUZZ_DIR).join("artifacts").join(target);
        let before = files(&artifacts);
        let mut cmd = cargo();
        cmd.args([
            "fuzz",
            "run",
            "-s",
            "none",
            "-a",
            "--fuzz-dir",
            FUZZ_DIR,
            target,
        ])
        .arg(&work)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(LIMITS);
        eprintln!("xtask: running {}", describe(&cmd));
        let status = cmd
            .status()
            .with_context(|| format!("cannot start {}", describe(&cmd)))?;
        if !status.success() {
            let found: Vec<PathBuf> = files(&artifacts).difference(&before).cloned().collect();
            eprintln!("xtask: fuzz target `{target}` FAILED ({status})");
            for input in &found {
                let shown = input.strip_prefix(&root).unwrap_or(input);
                eprintln!("xtask:   input saved at {}", shown.display());
                eprintln!(
                    "xtask:   reproduce: cargo fuzz run -s none -a --fuzz-dir {FUZZ_DIR} {target} {}",
                    shown.display()
                );
            }
            crashed.push(target);
        }
    }
    if !crashed.is_empty() {
        bail!("fuzz targets failed: {}", crashed.join(", "));
    }
    Ok(())
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` is not there.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let mut probe = cargo();
    probe.args(["fuzz", "--version"]);
    let present = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if present {
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", "cargo-fuzz", "--locked"]);
    run(install)
}

fn files(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default()
}

/// Replaces `to` with a copy of the files of `from`.
fn copy_fresh(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("cannot clear {}", to.display()))?;
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for file in files(from) {
        if let Some(name) = file.file_name() {
            std::fs::copy(&file, to.join(name))
                .with_context(|| format!("cannot copy {}", file.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target has a committed corpus, and every corpus a target.
    #[test]
    fn every_fuzz_target_has_a_corpus() {
        let corpus = project_root().join(FUZZ_DIR).join("corpus");
        for target in TARGETS {
            assert!(
                !files(&corpus.join(target)).is_empty(),
                "tests/fuzz/corpus/{target} is empty"
            );
        }
        for dir in files(&corpus) {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert!(
                TARGETS.contains(&name),
                "tests/fuzz/corpus/{name} has no target"
            );
        }
        let manifest = std::fs::read_to_string(project_root().join(FUZZ_DIR).join("Cargo.toml"))
            .unwrap_or_default();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} is not a bin of tests/fuzz/Cargo.toml"
            );
        }
    }
}
