//! The Rhai of mappings: `expr`, `skip_if`, `when`, `order_by`, `key_expr`.
//!
//! Scripts are compiled once when the mapping file is loaded; an import
//! builds one [`Runtime`] (its `lookup` bound to that import's tables) and
//! runs the compiled scripts per row. The engine has the formula sandbox's
//! limits ([`crate::formula::sandbox`]) and no module resolver, so a script
//! cannot read files; a script stopped by the operation limit fails the whole
//! import ([`ScriptError::Stopped`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Map, Scope};

/// A compiled script and its text.
#[derive(Clone)]
pub struct Script {
    pub text: String,
    ast: Arc<AST>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Script").field(&self.text).finish()
    }
}

/// Lookup tables by name: key → value.
pub type Tables = HashMap<String, HashMap<String, String>>;

/// The mapping's time rules, as `millis(s)`/`parse_time(s)` see them.
pub type TimeRule = Arc<dyn Fn(&str) -> Option<i64> + Send + Sync>;

/// Why a script gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptError {
    /// The operation limit (or another sandbox limit) stopped it: the import stops.
    Stopped(String),
    /// A runtime error of this row.
    Failed(String),
}

fn scope(row: Map, item: Dynamic) -> Scope<'static> {
    // Variables, not constants: the optimizer would otherwise fold the empty
    // compile-time placeholders into the AST. Each run gets its own copy, so
    // a script cannot change the row another script sees.
    let mut s = Scope::new();
    s.push("row", row);
    s.push("item", item);
    s
}

static COMPILER: LazyLock<Engine> =
    LazyLock::new(|| base_engine(Arc::new(Tables::new()), Arc::new(|_| None)));

/// Compiles a script; the error is (message, line, col) within the script.
pub fn compile(text: &str) -> Result<Script, (String, usize, usize)> {
    let sc = scope(Map::new(), Dynamic::UNIT);
    COMPILER
        .compile_with_scope(&sc, text)
        .map(|ast| Script {
            text: text.to_string(),
            ast: Arc::new(ast),
        })
        .map_err(|e| {
            let p = e.position();
            (
                e.0.to_string(),
                p.line().unwrap_or(1),
                p.position().unwrap_or(1),
            )
        })
}

/// `slug(s)`: lower case, every run of characters other than a–z0–9 → `_`, trimmed of `_`.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

fn base_engine(tables: Arc<Tables>, time: TimeRule) -> Engine {
    let mut engine = Engine::new();
    crate::formula::sandbox(&mut engine);
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.on_print(|s| tracing::debug!(target: "mapping", "{s}"));
    let t = tables.clone();
    engine.register_fn("lookup", move |name: &str, key: Dynamic| -> Dynamic {
        let key = if key.is_string() {
            key.into_string().unwrap_or_default()
        } else {
            key.to_string()
        };
        t.get(name)
            .and_then(|m| m.get(&key))
            .map_or(Dynamic::UNIT, |v| v.clone().into())
    });
    engine.register_fn("slug", |s: &str| slug(s));
    engine.register_fn("trim", |s: &str| s.trim().to_string());
    engine.register_fn("lower", |s: &str| s.to_lowercase());
    engine.register_fn("upper", |s: &str| s.to_uppercase());
    engine.register_fn("replace", |s: &str, from: &str, to: &str| {
        s.replace(from, to)
    });
    let tm = time.clone();
    engine.register_fn("parse_time", move |s: &str| -> Dynamic {
        tm(s).map_or(Dynamic::UNIT, |t| crate::period::format_utc(t).into())
    });
    engine.register_fn("millis", move |s: &str| -> Dynamic {
        time(s).map_or(Dynamic::UNIT, Dynamic::from_int)
    });
    // `()` in, `()` out, so `trim(row["Maybe"])` on an absent column is not an error.
    for name in ["slug", "trim", "lower", "upper", "parse_time", "millis"] {
        engine.register_fn(name, |_: ()| Dynamic::UNIT);
    }
    engine
}

/// The engine of one import.
pub struct Runtime {
    engine: Engine,
    tables: Arc<Tables>,
}

impl Runtime {
    pub fn new(tables: Arc<Tables>, time: TimeRule) -> Runtime {
        Runtime {
            engine: base_engine(tables.clone(), time),
            tables,
        }
    }

    /// The lookup tables `lookup` reads.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Runs `script` over `row` (and `item` of a for_each, or `()`).
    pub fn eval(&self, script: &Script, row: &Map, item: &Dynamic) -> Result<Dynamic, ScriptError> {
        let mut sc = scope(row.clone(), item.clone());
        self.engine
            .eval_ast_with_scope::<Dynamic>(&mut sc, &script.ast)
            .map_err(|e| match *e {
                EvalAltResult::ErrorTooManyOperations(_)
                | EvalAltResult::ErrorStackOverflow(_)
                | EvalAltResult::ErrorDataTooLarge(..) => ScriptError::Stopped(format!(
                    "{e} (the limit is {} operations per row; nothing was imported)",
                    crate::formula::MAX_OPERATIONS
                )),
                other => ScriptError::Failed(other.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> Runtime {
        let mut t = Tables::new();
        t.insert(
            "teams".into(),
            HashMap::from([("Ann".to_string(), "north".to_string())]),
        );
        Runtime::new(Arc::new(t), Arc::new(|s: &str| s.parse().ok()))
    }

    #[test]
    fn helpers_and_lookup() {
        let s = compile(r#"lookup("teams", trim(row["Owner"])) + "/" + slug(" Closed  Won! ")"#)
            .unwrap();
        let mut row = Map::new();
        row.insert("Owner".into(), " Ann ".into());
        let v = rt().eval(&s, &row, &Dynamic::UNIT).unwrap();
        assert_eq!(v.into_string().unwrap(), "north/closed_won");
        let s = compile(r#"lookup("teams", "Bob")"#).unwrap();
        assert!(rt().eval(&s, &row, &Dynamic::UNIT).unwrap().is_unit());
    }

    #[test]
    fn an_endless_script_is_stopped() {
        let s = compile("loop { }").unwrap();
        let e = rt().eval(&s, &Map::new(), &Dynamic::UNIT).unwrap_err();
        assert!(matches!(e, ScriptError::Stopped(_)), "{e:?}");
    }

    #[test]
    fn compile_errors_have_a_position_and_unknown_variables_are_errors() {
        let (m, line, _) = compile("let x = 1;\nnope + 1").unwrap_err();
        assert_eq!(line, 2, "{m}");
        assert!(compile(r#"import "x" as y; 1"#).is_ok());
        let e = rt().eval(
            &compile(r#"import "x" as y; 1"#).unwrap(),
            &Map::new(),
            &Dynamic::UNIT,
        );
        assert!(matches!(e, Err(ScriptError::Failed(_))), "{e:?}");
    }
}
