//! A real PostgreSQL for the tests: `KPI_TEST_PG_URL` when set (a server the
//! caller runs; each test gets a database of its own on it), else a
//! throwaway cluster this test binary makes with Debian's `initdb`/`pg_ctl`
//! (found under /usr/lib/postgresql/*/bin) in a temp dir, listening on
//! 127.0.0.1 only, and stopped and removed when the test binary exits.
//! Without either, every test that asks for one fails, saying why: tests
//! of the PostgreSQL store never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server: a URL without a database name (`postgres://user@host:port`).
struct Server {
    base: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// A URL of a new, empty database on the test server.
pub fn database() -> String {
    let server = SERVER
        .get_or_init(start)
        .as_ref()
        .unwrap_or_else(|e| panic!("no PostgreSQL for the PostgreSQL store tests: {e}"));
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "kpi_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin =
        postgres::Client::connect(&format!("{}/postgres", server.base), postgres::NoTls)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to the test PostgreSQL at {}: {e}",
                    server.base
                )
            });
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    format!("{}/{name}", server.base)
}

/// A client of the database at `url` (for what a test checks directly).
pub fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var("KPI_TEST_PG_URL") {
        // postgres://user:pass@host:port[/db]: the server part.
        let base = match url.splitn(4, '/').collect::<Vec<_>>().as_slice() {
            [scheme, "", host, _db] => format!("{scheme}//{host}"),
            _ => url.trim_end_matches('/').to_string(),
        };
        return Ok(Server { base });
    }
    let bin = binaries().ok_or(
        "set KPI_TEST_PG_URL, or install Debian's `postgresql` package (initdb and pg_ctl under /usr/lib/postgresql/*/bin)",
    )?;
    let dir = std::env::temp_dir().join(format!("kpi-test-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // initdb refuses to run as root: the cluster then belongs to the `postgres` user.
    let as_root = is_root();
    if as_root {
        run(Command::new("chown").arg("postgres").arg(&dir))?;
    }
    let port = free_port()?;
    let data = dir.join("data");
    run(tool(&bin, "initdb", as_root).arg("-D").arg(&data).args([
        "-U",
        "kpi",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    ]))?;
    run(tool(&bin, "pg_ctl", as_root)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200",
            dir.display()
        ))
        .args(["-w", "start"]))?;
    reap_when_gone(&bin, &data, &dir, as_root);
    Ok(Server {
        base: format!("postgres://kpi@127.0.0.1:{port}"),
    })
}

/// Stops the cluster and removes it once this test binary has exited.
fn reap_when_gone(bin: &Path, data: &Path, dir: &Path, as_root: bool) {
    let stop = format!(
        "{} {}/pg_ctl -D {} -m immediate stop",
        if as_root {
            "runuser -u postgres --"
        } else {
            ""
        },
        bin.display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {}",
        dir.display(),
        pid = std::process::id()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn binaries() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn tool(bin: &Path, name: &str, as_root: bool) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(name));
        c
    } else {
        Command::new(bin.join(name))
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}
