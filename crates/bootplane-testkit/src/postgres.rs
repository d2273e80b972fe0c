//! A throwaway PostgreSQL cluster for tests: Debian's real server (`initdb` + `pg_ctl`)
//! in a temporary directory, listening only on a Unix socket inside that directory (no
//! TCP port, nothing shared with other tests or a system cluster), stopped and removed
//! on drop, also when the test panics. As root the server runs as the `postgres` user
//! (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory of Debian's PostgreSQL binaries (the newest installed major version).
pub fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// Skips a test when PostgreSQL is not installed, unless `BOOTPLANE_REQUIRE_POSTGRES` is set
/// (`.ci/run` sets it), in which case it fails: such a test must never pass by not running.
#[macro_export]
macro_rules! require_postgres {
    () => {
        match $crate::postgres::TempPostgres::start_or_skip() {
            Some(pg) => pg,
            None => return,
        }
    };
}

pub struct TempPostgres {
    dir: PathBuf,
    bin: PathBuf,
    as_user: Option<&'static str>,
    next_db: std::sync::atomic::AtomicU32,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
}

impl TempPostgres {
    /// `None` when PostgreSQL is not installed; panics when it is but will not start.
    pub fn start() -> Option<TempPostgres> {
        let bin = pg_bin()?;
        let as_user = is_root().then_some("postgres");
        let dir = std::env::temp_dir().join(format!("bootplane-pg-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("creating the PostgreSQL test directory");
        if let Some(u) = as_user {
            crate::run(&["chown", u, dir.to_str().unwrap()]);
        }
        let pg = TempPostgres { dir, bin, as_user, next_db: Default::default() };
        let data = pg.dir.join("data");
        pg.pg(
            "initdb",
            &["-D", data.to_str().unwrap(), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"],
        );
        // Durability stays on (fsync, synchronous_commit): the tests check that a lease is
        // durable before its reply leaves, and a server killed with SIGKILL.
        let opts = format!("-c listen_addresses='' -k {} -c max_connections=300", pg.dir.display());
        let log = pg.dir.join("log");
        pg.pg("pg_ctl", &["-D", data.to_str().unwrap(), "-o", &opts, "-w", "-t", "30", "-l", log.to_str().unwrap(), "start"]);
        Some(pg)
    }

    /// A server tool, run as the server's user.
    fn tool(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut c = match self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        c.current_dir("/");
        c
    }

    /// [`TempPostgres::start`], saying so when the test will not run (see
    /// [`require_postgres!`]).
    pub fn start_or_skip() -> Option<TempPostgres> {
        let pg = TempPostgres::start();
        if pg.is_none() {
            if std::env::var_os("BOOTPLANE_REQUIRE_POSTGRES").is_some() {
                panic!("this test needs PostgreSQL (Debian package postgresql; BOOTPLANE_REQUIRE_POSTGRES is set)");
            }
            eprintln!("NOT RUN: needs PostgreSQL (apt-get install postgresql); this test checked nothing");
        }
        pg
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let out = self.tool(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// The socket directory (the `host` of a libpq connection string).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// A connection URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@{}/{db}", percent_path(&self.dir))
    }

    /// Creates a new empty database and returns its URL.
    pub fn new_database(&self) -> String {
        let n = self.next_db.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let db = format!("t{n}");
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
        self.url(&db)
    }

    /// Runs SQL with the real `psql` client; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .expect("running psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Kills the server as a power cut would (SIGKILL to the postmaster, no shutdown).
    pub fn stop_immediately(&self) {
        self.pg("pg_ctl", &["-D", self.dir.join("data").to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

/// A socket directory as the host part of a URL: libpq and tokio-postgres read a
/// percent-encoded path there.
fn percent_path(p: &Path) -> String {
    p.display().to_string().replace('/', "%2F")
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.tool("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
