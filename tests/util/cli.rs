//! Helpers for the end-to-end tests: every test gets its own deployment root (a temp dir holding
//! a copy of the repository's kpis/ and scripts/) and runs the real `kpi` binary against it.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// The repository root (where the standard library kpis/ and scripts/ live).
pub use super::repo;

/// A small data file under tests/fixtures/.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests").join("fixtures").join(name)
}

/// What one run of `kpi` gave.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts exit 0 and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "expected exit 0\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts the exit code and returns stderr.
    pub fn fails(self, code: i32) -> String {
        assert_eq!(
            self.code, code,
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("stack backtrace"),
            "a user error must not show a Rust panic or backtrace:\n{}",
            self.stderr
        );
        self.stderr
    }

    /// Asserts exit 0 and parses stdout as JSON.
    pub fn json(self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{out}"))
    }
}

/// A deployment root in a temp dir, with the standard library copied in.
pub struct Root {
    dir: TempDir,
}

impl Root {
    pub fn new() -> Root {
        let dir = TempDir::new().unwrap();
        super::library(dir.path());
        Root { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file under the root (creating its folder).
    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        fs::remove_file(self.path().join(rel)).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Copies tests/fixtures/NAME to the root, under the same name.
    pub fn fixture(&self, name: &str) {
        fs::copy(fixture(name), self.path().join(name)).unwrap();
    }

    /// A `kpi` command with `--root <tmp>`, run from inside the root (so relative file names
    /// given to `import` are reported as written).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kpi"));
        cmd.arg("--root")
            .arg(self.path())
            .args(args)
            .current_dir(self.path())
            .env_remove("KPI_DB")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// `kpi eval --scorecard CARD --period P --as-of T --format json EXTRA…`, parsed.
    pub fn scorecard_json(
        &self,
        card: &str,
        period: &str,
        as_of: &str,
        extra: &[&str],
    ) -> serde_json::Value {
        let mut args = vec![
            "eval",
            "--scorecard",
            card,
            "--period",
            period,
            "--as-of",
            as_of,
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        self.kpi(&args).json()
    }

    /// Runs `kpi --root <tmp> ARGS…`.
    pub fn kpi(&self, args: &[&str]) -> Output {
        self.kpi_env(args, &[])
    }

    /// [`Root::kpi`] with environment variables set.
    pub fn kpi_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run kpi");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// A root with the demo CRM written up to 2026-06-30 (deterministic).
    pub fn demo() -> Root {
        let root = Root::new();
        root.kpi(&["demo", "--until", "2026-06-30"]).ok();
        root
    }
}

/// `a` equals `b` up to rounding.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The report of `team` in an eval JSON object.
pub fn team<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["teams"]
        .as_array()
        .expect("teams is an array")
        .iter()
        .find(|t| t["team"] == id)
        .unwrap_or_else(|| panic!("no team {id} in {report:#}"))
}

/// The line of `kpi` in a team's report.
pub fn kpi<'a>(team: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    team["kpis"]
        .as_array()
        .expect("kpis is an array")
        .iter()
        .find(|k| k["kpi"] == id)
        .unwrap_or_else(|| panic!("no kpi {id} in {team:#}"))
}

/// The value of `kpi` for `team` (None = null, no data).
pub fn value(report: &serde_json::Value, team_id: &str, kpi_id: &str) -> Option<f64> {
    let v = &kpi(team(report, team_id), kpi_id)["value"];
    if v.is_null() {
        None
    } else {
        Some(
            v.as_f64()
                .unwrap_or_else(|| panic!("value is not a number: {v}")),
        )
    }
}

/// Sorted keys of a JSON object.
pub fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}
