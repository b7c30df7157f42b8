//! A light scan of formula text for the names it uses as literals.
//!
//! `kpi check` must catch `records("deals").sum("amout")` before anything runs.
//! Rhai does not expose its tokens, so this scanner reads just enough of the
//! language (identifiers, string literals, comments) to find calls whose
//! arguments are literal entity, field and KPI names, with their positions.

/// A literal name found in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub kind: LiteralKind,
    pub name: String,
    /// 1-based line and column in the scanned text.
    pub line: usize,
    pub col: usize,
    /// For fields: the entity of the nearest `records("…")` before it.
    pub entity: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralKind {
    Entity,
    Field,
    Kpi,
    /// The path of an `import "…"` statement.
    Import,
}

/// Methods whose first argument (and for spans, second) is a field name.
const FIELD_METHODS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "one_of",
    "is_null",
    "not_null",
    "in_period",
    "before_start",
    "before_end",
    "sum",
    "count_distinct",
    "avg",
    "min",
    "max",
    "avg_hours",
    "avg_days",
    "values",
    "count_by",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

fn tokens(text: &str) -> Vec<(Tok, usize, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0, 1, 1);
    let mut out = Vec::new();
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize| {
        if chars[*i] == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        let (l0, c0) = (line, col);
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col);
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                advance(&mut i, &mut line, &mut col);
            }
            for _ in 0..2.min(chars.len() - i) {
                advance(&mut i, &mut line, &mut col);
            }
        } else if c == '"' || c == '`' {
            let mut s = String::new();
            advance(&mut i, &mut line, &mut col);
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    advance(&mut i, &mut line, &mut col);
                }
                s.push(chars[i]);
                advance(&mut i, &mut line, &mut col);
            }
            if i < chars.len() {
                advance(&mut i, &mut line, &mut col);
            }
            out.push((Tok::Str(s), l0, c0));
        } else if c.is_alphabetic() || c == '_' {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                advance(&mut i, &mut line, &mut col);
            }
            out.push((Tok::Ident(s), l0, c0));
        } else {
            if !c.is_whitespace() {
                out.push((Tok::Punct(c), l0, c0));
            }
            advance(&mut i, &mut line, &mut col);
        }
    }
    out
}

/// Every string literal of the text (names a formula may use as fields).
pub fn strings(text: &str) -> Vec<String> {
    tokens(text)
        .into_iter()
        .filter_map(|(t, _, _)| if let Tok::Str(s) = t { Some(s) } else { None })
        .collect()
}

/// Every literal entity, field and KPI name used in calls, and every literal import path.
pub fn literals(text: &str) -> Vec<Literal> {
    let toks = tokens(text);
    let mut out = Vec::new();
    let mut entity: Option<String> = None;
    for w in 0..toks.len() {
        let Tok::Ident(name) = &toks[w].0 else {
            continue;
        };
        if name == "import"
            && let Some((Tok::Str(path), line, col)) = toks.get(w + 1)
        {
            out.push(Literal {
                kind: LiteralKind::Import,
                name: path.clone(),
                line: *line,
                col: *col,
                entity: None,
            });
            continue;
        }
        if toks.get(w + 1).map(|t| &t.0) != Some(&Tok::Punct('(')) {
            continue;
        }
        let method = w > 0 && toks[w - 1].0 == Tok::Punct('.');
        let arg = |k: usize| match toks.get(w + k) {
            Some((Tok::Str(s), l, c)) => Some((s.clone(), *l, *c)),
            _ => None,
        };
        let push = |out: &mut Vec<Literal>,
                    kind,
                    (name, line, col): (String, usize, usize),
                    entity: &Option<String>| {
            out.push(Literal {
                kind,
                name,
                line,
                col,
                entity: entity.clone(),
            })
        };
        match name.as_str() {
            "records" if !method => {
                if let Some(a) = arg(2) {
                    entity = Some(a.0.clone());
                    push(&mut out, LiteralKind::Entity, a, &None);
                }
            }
            "kpi" if !method => {
                if let Some(a) = arg(2) {
                    push(&mut out, LiteralKind::Kpi, a, &None);
                }
            }
            m if method && FIELD_METHODS.contains(&m) => {
                if let Some(a) = arg(2) {
                    push(&mut out, LiteralKind::Field, a, &entity);
                }
                if (m == "avg_hours" || m == "avg_days")
                    && toks.get(w + 3).map(|t| &t.0) == Some(&Tok::Punct(','))
                    && let Some(a) = arg(4)
                {
                    push(&mut out, LiteralKind::Field, a, &entity);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_entities_fields_and_kpis_with_positions() {
        let text = "// records(\"nope\")\nlet won = records(\"deals\").eq(\"stage\", \"won\")\n  .avg_days(\"created_at\", \"closed_at\");\nkpi(\"revenue\") / won";
        let lits = literals(text);
        let names: Vec<(&str, LiteralKind)> =
            lits.iter().map(|l| (l.name.as_str(), l.kind)).collect();
        assert_eq!(
            names,
            [
                ("deals", LiteralKind::Entity),
                ("stage", LiteralKind::Field),
                ("created_at", LiteralKind::Field),
                ("closed_at", LiteralKind::Field),
                ("revenue", LiteralKind::Kpi)
            ]
        );
        assert_eq!((lits[1].line, lits[1].col), (2, 31));
        assert_eq!(lits[2].entity.as_deref(), Some("deals"));
    }

    #[test]
    fn ignores_strings_and_comments_that_are_not_call_arguments() {
        let text = "/* .eq(\"x\") */ let s = \"records(\\\"y\\\")\"; s";
        assert!(literals(text).is_empty());
    }
}
