//! The Rhai side of formulas: a sandboxed engine and the query API of SPEC 5.1.
//!
//! One [`FormulaEngine`] is built per configuration snapshot and shared by
//! every evaluation (rhai's `sync` feature). Formulas reach the data through a
//! [`Host`], the evaluator's view of "this team, this period"; the host of the
//! formula running on this thread is kept on a thread-local stack, because a
//! formula may call `kpi()`, which runs another formula on the same thread.
//!
//! The engine is a sandbox: no file, network or process access, `import` only
//! of scripts under scripts/ (from the snapshot, never from disk), and limits
//! on operations, call depth and sizes, so an endless loop fails one value.

pub mod api;
pub mod scan;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Position, Scope};

use crate::period::{Calendar, PeriodId};
use crate::query::{Agg, AggValue, Query};
use crate::store::Schema;

/// Operations one formula may run before it is stopped.
pub const MAX_OPERATIONS: u64 = 2_000_000;

/// What a formula can ask of the evaluation it runs in.
pub trait Host {
    fn calendar(&self) -> &Calendar;
    fn schema(&self) -> &Schema;
    /// The evaluated period.
    fn period(&self) -> PeriodId;
    fn as_of(&self) -> i64;
    /// Runs an aggregate for the evaluated team (or all teams) and `period`.
    fn aggregate(&self, query: &Query, agg: &Agg) -> Result<AggValue, HostError>;
    /// Another KPI's value for the evaluated team in `period` (its first
    /// `cut` ms only, when given): Ok(None) when it has no data.
    fn kpi(&self, id: &str, period: PeriodId, cut: Option<i64>) -> Result<Option<f64>, HostError>;
    /// In a frame evaluating a cut period (`kpi(id, p.to_date())`): how many ms
    /// of the period count.
    fn cut(&self) -> Option<i64> {
        None
    }
}

/// Who a formula is evaluated for, as its `team` and `owner` variables show it.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The team's id and name (a person's own team when a person is evaluated).
    pub team: (&'a str, &'a str),
    /// The person's id, name and team id; None when a team is evaluated.
    pub owner: Option<(&'a str, &'a str, &'a str)>,
}

/// Why the host could not answer a formula.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostError {
    /// The question has no answer for this subject (a person, and an entity
    /// whose records name no person): the value is no data.
    #[error("no data")]
    NoData,
    /// The formula asked for something that cannot exist (an unknown KPI).
    #[error("{0}")]
    Mistake(String),
    /// The answer failed (the records could not be read, another KPI failed).
    #[error("{0}")]
    Failed(String),
}

/// What kind of failure a formula value had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// A mistake in the formula whatever the data (`kpi check` reports it).
    Mistake,
    /// A failure of this run: a runtime error, a limit, a store error.
    Runtime,
}

/// A failed formula value, located in the file that defines it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct FormulaError {
    pub kind: FailKind,
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

thread_local! {
    static HOSTS: RefCell<Vec<Rc<dyn Host>>> = const { RefCell::new(Vec::new()) };
    /// When the value being computed on this thread runs out of its time budget.
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// The default wall-clock budget of one value (`formula_time_budget` in settings.toml).
pub const DEFAULT_TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// What `on_progress` stops a run with when its time budget is spent.
const OUT_OF_TIME: &str = "kpi-engine: out of time";

/// Sets this thread's deadline for one run (never later than an enclosing
/// run's: `kpi(id)` inside a formula spends the outer value's time) and
/// puts the outer one back when dropped.
struct DeadlineGuard(Option<std::time::Instant>);

impl DeadlineGuard {
    fn start(budget: std::time::Duration) -> DeadlineGuard {
        let outer = DEADLINE.get();
        let mine = std::time::Instant::now() + budget;
        DEADLINE.set(Some(outer.map_or(mine, |o| o.min(mine))));
        DeadlineGuard(outer)
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.set(self.0);
    }
}

/// The host of the formula running on this thread.
pub(crate) fn host() -> Result<Rc<dyn Host>, Box<EvalAltResult>> {
    HOSTS
        .with(|h| h.borrow().last().cloned())
        .ok_or_else(|| "records() can only be used inside a KPI formula".into())
}

/// Keeps `host` current for the duration of a run, even if the run panics.
struct HostGuard;

impl HostGuard {
    fn push(host: Rc<dyn Host>) -> HostGuard {
        HOSTS.with(|h| h.borrow_mut().push(host));
        HostGuard
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        HOSTS.with(|h| h.borrow_mut().pop());
    }
}

/// What one run of a formula produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Value(f64),
    NoData,
    Error(FormulaError),
}

/// Where a compiled formula came from, to translate Rhai positions into file positions.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: String,
    /// Line of the file where the formula's first line is.
    pub first_line: usize,
    /// Column of the first character of the first line.
    pub first_col: usize,
}

impl Origin {
    pub fn locate(&self, pos: Position) -> (usize, usize) {
        match (pos.line(), pos.position()) {
            (Some(1), Some(c)) => (self.first_line, self.first_col + c - 1),
            (Some(l), Some(c)) => (self.first_line + l - 1, c),
            (Some(l), None) => (self.first_line + l - 1, 0),
            _ => (self.first_line, self.first_col),
        }
    }
}

/// The limits of every user-written Rhai script (formulas, and the `expr`s
/// of mappings): operations, call depth, sizes, strict variables, no `eval`.
pub fn sandbox(engine: &mut Engine) {
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(48)
        .set_max_expr_depths(64, 48)
        .set_max_string_size(64 << 20)
        .set_max_array_size(4_000_000)
        .set_max_map_size(4_000_000)
        .set_max_modules(32)
        .set_strict_variables(true)
        .disable_symbol("eval");
}

/// A sandboxed Rhai engine with the formula API registered.
pub struct FormulaEngine {
    engine: Engine,
    budget: std::time::Duration,
}

impl FormulaEngine {
    /// `scripts` are the files under scripts/, by path relative to it; they
    /// are what `import` may load.
    pub fn new(scripts: Arc<BTreeMap<String, String>>) -> FormulaEngine {
        FormulaEngine::with_budget(scripts, DEFAULT_TIME_BUDGET)
    }

    /// An engine whose runs stop, with a clear error for that value alone,
    /// once they took `budget` of wall-clock time.
    pub fn with_budget(
        scripts: Arc<BTreeMap<String, String>>,
        budget: std::time::Duration,
    ) -> FormulaEngine {
        let mut engine = Engine::new();
        sandbox(&mut engine);
        engine.on_progress(|ops| {
            // The clock is read every 256 operations; an aggregate is one call.
            if ops & 0xff == 0
                && DEADLINE
                    .get()
                    .is_some_and(|d| std::time::Instant::now() >= d)
            {
                return Some(Dynamic::from(OUT_OF_TIME));
            }
            None
        });
        engine
            .on_print(|s| tracing::debug!(target: "formula", "{s}"))
            .on_debug(|s, _, _| tracing::debug!(target: "formula", "{s}"));
        engine.set_module_resolver(ScriptResolver {
            scripts,
            cache: Mutex::new(HashMap::new()),
        });
        api::register(&mut engine);
        FormulaEngine { engine, budget }
    }

    /// The scope every formula sees: `period`, `team`, `params`. They are
    /// variables, not constants: the optimizer would otherwise fold the
    /// compile-time placeholders into the AST.
    fn scope(
        period: api::PeriodVal,
        team: rhai::Map,
        owner: Dynamic,
        params: rhai::Map,
    ) -> Scope<'static> {
        let mut scope = Scope::new();
        scope.push("period", period);
        scope.push("team", team);
        scope.push("owner", owner);
        scope.push("params", params);
        scope
    }

    /// Compiles formula text. The error is (message, line, col) in `origin`'s file.
    pub fn compile(&self, text: &str, origin: &Origin) -> Result<AST, (String, usize, usize)> {
        let scope = Self::scope(
            api::PeriodVal::current(PeriodId::year(2000), None),
            rhai::Map::new(),
            Dynamic::UNIT,
            rhai::Map::new(),
        );
        self.engine.compile_with_scope(&scope, text).map_err(|e| {
            let (line, col) = origin.locate(e.position());
            (format!("Rhai syntax error: {}", e.err_type()), line, col)
        })
    }

    /// Runs a compiled formula for the host's team and period.
    pub fn run(
        &self,
        ast: &AST,
        origin: &Origin,
        host: Rc<dyn Host>,
        names: Names<'_>,
        params: &rhai::Map,
    ) -> Outcome {
        let period = api::PeriodVal::current(host.period(), host.cut());
        let mut team_map = rhai::Map::new();
        team_map.insert("id".into(), names.team.0.into());
        team_map.insert("name".into(), names.team.1.into());
        let owner = match names.owner {
            None => Dynamic::UNIT,
            Some((id, name, team)) => {
                let mut m = rhai::Map::new();
                m.insert("id".into(), id.into());
                m.insert("name".into(), name.into());
                m.insert("team".into(), team.into());
                m.into()
            }
        };
        let mut scope = Self::scope(period, team_map, owner, params.clone());
        let _guard = HostGuard::push(host);
        let _deadline = DeadlineGuard::start(self.budget);
        match self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast) {
            Ok(v) => outcome_of(v, origin),
            Err(e) => error_outcome(*e, origin, self.budget),
        }
    }
}

fn outcome_of(v: Dynamic, origin: &Origin) -> Outcome {
    if v.is_unit() {
        return Outcome::NoData;
    }
    let x = if let Some(f) = v.clone().try_cast::<f64>() {
        f
    } else if let Some(i) = v.clone().try_cast::<i64>() {
        i as f64
    } else {
        return Outcome::Error(FormulaError {
            kind: FailKind::Mistake,
            file: origin.file.clone(),
            line: origin.first_line,
            col: origin.first_col,
            message: format!(
                "the formula must end in a number, but it gave {}",
                v.type_name()
            ),
        });
    };
    if x.is_finite() {
        Outcome::Value(x)
    } else {
        Outcome::NoData
    }
}

/// A Rhai error → no data (arithmetic on a missing value) or a located error.
fn error_outcome(e: EvalAltResult, origin: &Origin, budget: std::time::Duration) -> Outcome {
    let root = innermost(&e);
    if let EvalAltResult::ErrorFunctionNotFound(sig, _) = root
        && sig.contains("()")
    {
        return Outcome::NoData;
    }
    if let EvalAltResult::ErrorRuntime(v, _) = root
        && v.clone().try_cast::<api::NoData>().is_some()
    {
        return Outcome::NoData;
    }
    let (line, col) = origin.locate(e.position());
    let (kind, message) = match root {
        EvalAltResult::ErrorTooManyOperations(_) => (
            FailKind::Runtime,
            format!("stopped after {MAX_OPERATIONS} operations (an endless loop?)"),
        ),
        EvalAltResult::ErrorTerminated(_, _) => (
            FailKind::Runtime,
            format!(
                "stopped after its time budget of {} (formula_time_budget in kpis/settings.toml); too many or too slow queries?",
                crate::config::alerts::format_duration(budget)
            ),
        ),
        EvalAltResult::ErrorRuntime(v, _) => match v.clone().try_cast::<api::Mistake>() {
            Some(api::Mistake(m)) => (FailKind::Mistake, m),
            None => (FailKind::Runtime, v.to_string()),
        },
        other => (FailKind::Runtime, other.to_string()),
    };
    Outcome::Error(FormulaError {
        kind,
        file: origin.file.clone(),
        line,
        col,
        message,
    })
}

fn innermost(e: &EvalAltResult) -> &EvalAltResult {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => innermost(inner),
        other => other,
    }
}

/// The script under scripts/ that `import "path"` reads, or why there is
/// none: only scripts/ is read (no absolute paths, no `..`), and only scripts
/// the snapshot holds. `kpi check` applies the same rule to literal imports.
pub fn import_target(scripts: &BTreeMap<String, String>, path: &str) -> Result<String, String> {
    let name = if path.ends_with(".rhai") {
        path.to_string()
    } else {
        format!("{path}.rhai")
    };
    let inside = !name.starts_with('/')
        && !name.contains('\\')
        && name.split('/').all(|c| !c.is_empty() && c != "..");
    if inside && scripts.contains_key(&name) {
        Ok(name)
    } else {
        Err(format!(
            "cannot import \"{path}\": import only reads scripts/ (no such script there)"
        ))
    }
}

/// `import` from the snapshot's scripts/ only: no absolute paths, no `..`.
struct ScriptResolver {
    scripts: Arc<BTreeMap<String, String>>,
    cache: Mutex<HashMap<String, rhai::Shared<rhai::Module>>>,
}

impl rhai::ModuleResolver for ScriptResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        // Not ErrorModuleNotFound: rhai replaces that with its own message.
        let name = import_target(&self.scripts, path)
            .map_err(|m| Box::new(EvalAltResult::ErrorRuntime(m.into(), pos)))?;
        if let Some(m) = self.cache.lock().expect("module cache").get(&name) {
            return Ok(m.clone());
        }
        let text = &self.scripts[&name];
        let ast = engine
            .compile(text)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e.into(), pos)))?;
        let module: rhai::Shared<rhai::Module> =
            rhai::Module::eval_ast_as_new(Scope::new(), &ast, engine)?.into();
        self.cache
            .lock()
            .expect("module cache")
            .insert(name, module.clone());
        Ok(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;

    /// A host whose every aggregate is 2.0 and whose only KPI is "two".
    struct Fixed(Schema, Calendar);

    impl Host for Fixed {
        fn calendar(&self) -> &Calendar {
            &self.1
        }
        fn schema(&self) -> &Schema {
            &self.0
        }
        fn period(&self) -> PeriodId {
            "2026-Q1".parse().unwrap()
        }
        fn as_of(&self) -> i64 {
            0
        }
        fn aggregate(&self, _: &Query, _: &Agg) -> Result<AggValue, HostError> {
            Ok(AggValue::Number(2.0))
        }
        fn kpi(&self, id: &str, _: PeriodId, _: Option<i64>) -> Result<Option<f64>, HostError> {
            Ok((id == "two").then_some(2.0))
        }
    }

    /// Runs a formula; a failure comes back as its message, kind and location.
    fn run(text: &str, scripts: &[(&str, &str)]) -> Result<Option<f64>, String> {
        match outcome(text, scripts) {
            Outcome::Value(v) => Ok(Some(v)),
            Outcome::NoData => Ok(None),
            Outcome::Error(e) => Err(e.to_string()),
        }
    }

    fn outcome(text: &str, scripts: &[(&str, &str)]) -> Outcome {
        let schema = Schema::from_source(&Source::new(
            "s",
            "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\namount = \"real\"\n",
        ))
        .unwrap();
        let scripts = scripts
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let engine = FormulaEngine::new(Arc::new(scripts));
        let origin = Origin {
            file: "kpis/t.toml".into(),
            first_line: 10,
            first_col: 1,
        };
        let ast = match engine.compile(text, &origin) {
            Ok(a) => a,
            Err((m, line, col)) => {
                return Outcome::Error(FormulaError {
                    kind: FailKind::Mistake,
                    file: "compile".into(),
                    line,
                    col,
                    message: m,
                });
            }
        };
        engine.run(
            &ast,
            &origin,
            Rc::new(Fixed(schema, Calendar::utc())),
            Names {
                team: ("t", "T"),
                owner: None,
            },
            &rhai::Map::new(),
        )
    }

    #[test]
    fn aggregates_are_floats_so_division_never_truncates() {
        assert_eq!(
            run("let n = records(\"deals\").count(); 1 / (n + 1.0)", &[]),
            Ok(Some(1.0 / 3.0))
        );
    }

    #[test]
    fn missing_values_zero_division_and_nan_are_no_data() {
        assert_eq!(run("0.0 / 0.0", &[]), Ok(None));
        assert_eq!(run("1.0 / 0.0", &[]), Ok(None));
        assert_eq!(run("kpi(\"none\") * 2.0", &[]), Ok(None));
        assert_eq!(run("kpi(\"two\") * 2", &[]), Ok(Some(4.0)));
        assert_eq!(run("()", &[]), Ok(None));
    }

    #[test]
    fn an_endless_loop_is_stopped_with_a_clear_error() {
        let Err(e) = run("let x = 0;\nloop { x += 1; }", &[]) else {
            panic!("not stopped")
        };
        assert!(
            e.contains("operations") && e.starts_with("kpis/t.toml:11:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_fail_with_a_hint_and_position() {
        let Err(e) = run("records(\"deals\")\n  .sum(\"amout\")", &[]) else {
            panic!()
        };
        assert!(
            e.contains("deals has no field 'amout'; did you mean 'amount'?"),
            "{e}"
        );
        assert!(e.starts_with("kpis/t.toml:11:"), "{e}");
    }

    #[test]
    fn import_reads_only_scripts_from_the_snapshot() {
        let lib = [("util.rhai", "fn double(x) { x * 2.0 }")];
        assert_eq!(
            run("import \"util\" as u; u::double(21.0)", &lib),
            Ok(Some(42.0))
        );
        for path in ["../../etc/passwd", "/etc/passwd", "nope"] {
            let Err(e) = run(&format!("import \"{path}\" as u; 1"), &lib) else {
                panic!("{path} imported")
            };
            assert!(e.contains("import only reads scripts/"), "{e}");
        }
    }

    #[test]
    fn syntax_errors_and_unknown_variables_fail_at_compile_time() {
        let Err(e) = run("let x = ;", &[]) else {
            panic!()
        };
        assert!(e.starts_with("compile:10:"), "{e}");
        let Err(e) = run("undefined_thing + 1", &[]) else {
            panic!()
        };
        assert!(e.contains("compile"), "{e}");
    }

    #[test]
    fn mistakes_in_the_formula_are_told_apart_from_runtime_failures() {
        let kind = |text| match outcome(text, &[]) {
            Outcome::Error(e) => Some(e.kind),
            _ => None,
        };
        assert_eq!(
            kind("records(\"deals\").sum(\"amout\")"),
            Some(FailKind::Mistake)
        );
        assert_eq!(kind("records(\"dealz\").count()"), Some(FailKind::Mistake));
        assert_eq!(
            kind("records(\"deals\").eq(\"amount\", \"x\").count()"),
            Some(FailKind::Mistake)
        );
        assert_eq!(kind("throw \"boom\""), Some(FailKind::Runtime));
        assert_eq!(kind("loop {}"), Some(FailKind::Runtime));
    }

    #[test]
    fn the_result_must_be_a_number() {
        let Err(e) = run("\"text\"", &[]) else {
            panic!()
        };
        assert!(e.contains("must end in a number"), "{e}");
    }
}
