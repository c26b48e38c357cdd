//! Embeds the migrations of both stores (`migrations/sqlite`, `migrations/postgres`) as a
//! table in `$OUT_DIR/migrations.rs`: `(store, version, description, sql)`, the SQL through
//! `include_str!`. This is what `sqlx::migrate!` does, without the proc-macro crate that would
//! build a second copy of sqlx for the host (see `src/migrations.rs`).

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

const STORES: [&str; 2] = ["sqlite", "postgres"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut table = String::from("&[\n");
    for store in STORES {
        let dir = root.join(store);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 name");
            // `<version>_<description>.sql`, as sqlx reads a migrations directory.
            let (version, rest) = name
                .split_once('_')
                .unwrap_or_else(|| panic!("migration {name} is not <version>_<name>.sql"));
            let version: i64 = version
                .parse()
                .unwrap_or_else(|_| panic!("migration {name} has no integer version"));
            assert!(
                !rest.ends_with(".up.sql") && !rest.ends_with(".down.sql"),
                "migration {name}: reversible migrations are not used here"
            );
            let description = rest.trim_end_matches(".sql").replace('_', " ");
            let path = path.canonicalize().expect("a migration's path");
            writeln!(
                table,
                "    ({store:?}, {version}, {description:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .expect("writing to a String");
        }
    }
    table.push_str("]\n");
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    fs::write(&out, table).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
