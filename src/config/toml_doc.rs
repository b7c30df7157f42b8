//! A TOML document with a position for every key and value.
//!
//! Configuration files are read into this small owned tree so that every
//! semantic check (unknown field, bad weight, unknown KPI) can name the exact
//! line and column, not just the file.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::diag::Diagnostic;

/// A file's text and its path relative to the root.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    pub fn new(file: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            file: file.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    pub fn error_at(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.line_col(span.start);
        Diagnostic::new(&self.file, line, col, message)
    }

    /// Parses the text as TOML into a positioned tree.
    pub fn parse(&self) -> Result<Node, Diagnostic> {
        let table = DeTable::parse(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            self.error_at(&span, format!("invalid TOML: {message}"))
        })?;
        let span = table.span();
        Ok(Node {
            span,
            kind: convert_table(table.into_inner()),
        })
    }
}

/// A key with its position.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub span: Range<usize>,
}

/// A value with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Range<usize>,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Integers and floats both read as numbers.
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            NodeKind::Int(i) => Some(i as f64),
            NodeKind::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            NodeKind::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            NodeKind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            NodeKind::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_table()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// A short name of the value's type for messages ("a string", "a table").
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Str(_) => "a string",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Datetime(_) => "a date-time",
            NodeKind::Array(_) => "an array",
            NodeKind::Table(_) => "a table",
        }
    }
}

fn convert_table(table: DeTable<'_>) -> NodeKind {
    NodeKind::Table(
        table
            .into_iter()
            .map(|(k, v)| {
                let key = Key {
                    name: k.get_ref().to_string(),
                    span: k.span(),
                };
                (key, convert(v.span(), v.into_inner()))
            })
            .collect(),
    )
}

fn convert(span: Range<usize>, value: DeValue<'_>) -> Node {
    let kind = match value {
        DeValue::String(s) => NodeKind::Str(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(v) => NodeKind::Int(v),
            Err(_) => NodeKind::Float(f64::NAN),
        },
        DeValue::Float(f) => NodeKind::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => NodeKind::Bool(b),
        DeValue::Datetime(d) => NodeKind::Datetime(d.to_string()),
        DeValue::Array(a) => NodeKind::Array(
            a.into_iter()
                .map(|v| convert(v.span(), v.into_inner()))
                .collect(),
        ),
        DeValue::Table(t) => convert_table(t),
    };
    Node { span, kind }
}

/// Helpers for walking a table while collecting diagnostics.
pub struct Reader<'a> {
    pub src: &'a Source,
    pub errors: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a Source) -> Self {
        Reader {
            src,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let d = self.src.error_at(span, message);
        self.errors.push(d);
    }

    /// Reports every key of `table` not in `allowed` as an unknown field.
    pub fn deny_unknown(&mut self, table: &Node, what: &str, allowed: &[&str]) {
        for (k, _) in table.as_table().unwrap_or_default() {
            if !allowed.contains(&k.name.as_str()) {
                let hint = crate::diag::hint(&k.name, allowed.iter().copied());
                self.error(
                    &k.span,
                    format!("unknown field '{}' in {what}{hint}", k.name),
                );
            }
        }
    }

    pub fn table<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Key, Node)]> {
        let t = node.as_table();
        if t.is_none() {
            self.error(
                &node.span,
                format!("{what} must be a table, found {}", node.type_name()),
            );
        }
        t
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = node.as_str().map(str::to_string);
        if s.is_none() {
            self.error(
                &node.span,
                format!("{what} must be a string, found {}", node.type_name()),
            );
        }
        s
    }

    pub fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        let n = node.as_f64().filter(|f| f.is_finite());
        if n.is_none() {
            self.error(
                &node.span,
                format!("{what} must be a number, found {}", node.type_name()),
            );
        }
        n
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        let b = node.as_bool();
        if b.is_none() {
            self.error(
                &node.span,
                format!("{what} must be true or false, found {}", node.type_name()),
            );
        }
        b
    }

    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let Some(items) = node.as_array() else {
            self.error(
                &node.span,
                format!(
                    "{what} must be an array of strings, found {}",
                    node.type_name()
                ),
            );
            return None;
        };
        items.iter().map(|n| self.string(n, what)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_keys_and_values() {
        let src = Source::new("kpis/x.toml", "a = 1\n[t]\nname = \"x\"\n");
        let doc = src.parse().unwrap();
        let t = doc.get("t").unwrap();
        let (k, v) = &t.as_table().unwrap()[0];
        assert_eq!(src.line_col(k.span.start), (3, 1));
        assert_eq!(v.as_str(), Some("x"));
        assert_eq!(doc.get("a").unwrap().as_f64(), Some(1.0));
    }

    #[test]
    fn reports_syntax_errors_with_location() {
        let src = Source::new("kpis/x.toml", "a = 1\nb = [\n");
        let err = src.parse().unwrap_err();
        assert_eq!(err.file, "kpis/x.toml");
        assert!(err.line >= 2, "{err}");
        assert!(err.message.starts_with("invalid TOML"));
    }
}
