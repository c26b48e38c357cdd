//! Finding a Postgres for the test matrix: the environment's URL, else a server on
//! 127.0.0.1:5432, else a throwaway cluster started from the local `initdb`/`pg_ctl` in a temp
//! dir on a free port (removed afterwards). `XTASK_POSTGRES=throwaway` forces the last.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A Postgres the suites may create databases on. Drops its throwaway cluster, if any.
pub struct Pg {
    admin_url: String,
    // Held for its Drop: stops and removes the throwaway cluster.
    _cluster: Option<Cluster>,
}

impl Pg {
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

struct Cluster {
    dir: PathBuf,
    pg_ctl: PathBuf,
    run_as: Option<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let mut stop = command(&self.pg_ctl, self.run_as.as_deref());
        stop.arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]);
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!("xtask: stopped and removed the throwaway Postgres");
    }
}

fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Finds or starts a Postgres; `None` when there is none to be had.
pub fn acquire() -> anyhow::Result<Option<Pg>> {
    let forced = std::env::var("XTASK_POSTGRES").is_ok_and(|v| v == "throwaway");
    if !forced {
        for var in ["WXLOGIN_TEST_POSTGRES_URL", "DATABASE_URL"] {
            if let Ok(url) = std::env::var(var)
                && is_postgres_url(&url)
            {
                eprintln!("xtask: Postgres from {var}");
                return Ok(Some(Pg {
                    admin_url: url,
                    _cluster: None,
                }));
            }
        }
        let local: SocketAddr = ([127, 0, 0, 1], 5432).into();
        if TcpStream::connect_timeout(&local, Duration::from_millis(500)).is_ok() {
            let url = "postgres://postgres@127.0.0.1:5432/postgres";
            if accepts(url) {
                eprintln!("xtask: Postgres already listening on 127.0.0.1:5432");
                return Ok(Some(Pg {
                    admin_url: url.into(),
                    _cluster: None,
                }));
            }
            eprintln!(
                "xtask: a server listens on 127.0.0.1:5432 but does not let user `postgres` in \
                 without a password; trying a throwaway cluster instead"
            );
        }
    }
    let Some(bin) = find_bin_dir() else {
        return Ok(None);
    };
    start_throwaway(&bin).map(Some)
}

/// Whether `url` lets us in without a password, asked with `psql -w` when psql is installed.
/// Without psql there is no cheap way to ask, so the server is taken as it is.
fn accepts(url: &str) -> bool {
    match Command::new(psql_path())
        .args(["-w", "-X", "-A", "-t", "-c", "SELECT 1", "-d", url])
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
    {
        Ok(out) => out.status.success(),
        Err(_) => true,
    }
}

/// The local psql: beside `initdb` when there is one, else from PATH.
fn psql_path() -> PathBuf {
    find_bin_dir()
        .map(|dir| dir.join("psql"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// Runs one SQL statement on `url` with psql, without a password prompt, stopping on error
/// (the benchmark's throwaway database).
pub fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new(psql_path());
    cmd.args([
        "-w",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
        "-d",
        url,
    ])
    .env("PGCONNECT_TIMEOUT", "5");
    check(cmd, "psql")
}

/// `url` naming the database `name` instead of its own (user, host and query kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_at..].find('/') {
        Some(slash) => &base[..authority_at + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest version).
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `initdb` refuses to run as root: run the cluster as the `postgres` system user then.
fn command(program: &Path, run_as: Option<&str>) -> Command {
    match run_as {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?.port())
}

fn check(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn start_throwaway(bin: &Path) -> anyhow::Result<Pg> {
    let run_as = is_root().then(|| "postgres".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("wxlogin-pg-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pg_ctl = bin.join("pg_ctl");
    // From here on, Drop stops the cluster and removes the directory, even on error.
    let cluster = Cluster {
        dir: dir.clone(),
        pg_ctl: pg_ctl.clone(),
        run_as: run_as.clone(),
    };
    if let Some(user) = &run_as {
        let mut chown = Command::new("chown");
        chown.arg(format!("{user}:")).arg(&dir);
        check(chown, "chown of the throwaway cluster directory")?;
    }
    let data = dir.join("data");
    let mut initdb = command(&bin.join("initdb"), run_as.as_deref());
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    check(initdb, "initdb")?;

    let port = free_port()?;
    let mut start = command(&pg_ctl, run_as.as_deref());
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            dir.display()
        ))
        .args(["-w", "start"]);
    check(start, "pg_ctl start")?;
    eprintln!(
        "xtask: started a throwaway Postgres from {} on 127.0.0.1:{port}",
        bin.display()
    );
    Ok(Pg {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        _cluster: Some(cluster),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5433/app?sslmode=disable", "b"),
            "postgresql://u:p@db:5433/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@localhost", "b"),
            "postgres://u@localhost/b"
        );
    }
}
