//! Cell conversion: one text cell (CSV) or JSON value into a typed [`Value`]
//! of one field, by the rules of SPEC 3.3 (empty = NULL, bool true/false/1/0,
//! the three time forms read in settings.timezone, `values` of a text field).

use super::super::Value;
use super::super::schema::{Entity, Field, FieldType};
use crate::period::Calendar;

/// Turns text and JSON input into typed values for one entity.
pub struct RowReader<'a> {
    pub entity: &'a Entity,
    pub cal: &'a Calendar,
}

impl RowReader<'_> {
    /// Reads one text cell (CSV). An empty cell is NULL.
    pub fn text_value(&self, field: &Field, raw: &str) -> Result<Value, String> {
        if raw.is_empty() {
            return self.null_value(field);
        }
        let got = || format!("got {raw:?}");
        match field.ty {
            FieldType::Text => self.text(field, raw),
            FieldType::Integer => match raw.trim().parse::<i64>() {
                Ok(i) if i != i64::MIN => Ok(Value::Int(i)),
                _ => Err(format!("expected an integer, {}", got())),
            },
            FieldType::Real => match raw.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Real(f)),
                _ => Err(format!("expected a real number, {}", got())),
            },
            FieldType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true/false/1/0, {}", got())),
            },
            FieldType::Time => self.time(raw),
        }
    }

    /// Reads one JSON value (NDJSON, API bodies). `null` is NULL.
    pub fn json_value(&self, field: &Field, raw: &serde_json::Value) -> Result<Value, String> {
        use serde_json::Value as J;
        match (field.ty, raw) {
            (_, J::Null) => self.null_value(field),
            (FieldType::Text, J::String(s)) => self.text(field, s),
            (FieldType::Integer, J::Number(n)) if n.as_i64().is_some_and(|i| i != i64::MIN) => {
                Ok(Value::Int(n.as_i64().unwrap_or_default()))
            }
            (FieldType::Real, J::Number(n)) if n.as_f64().is_some() => {
                Ok(Value::Real(n.as_f64().unwrap_or_default()))
            }
            (FieldType::Bool, J::Bool(b)) => Ok(Value::Bool(*b)),
            (FieldType::Bool, J::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            (FieldType::Time, J::String(s)) => self.time(s),
            (ty, other) => Err(format!("expected {}, got {other}", expected(ty))),
        }
    }

    fn null_value(&self, field: &Field) -> Result<Value, String> {
        if field.optional {
            Ok(Value::Null)
        } else {
            Err("a value is required, got nothing".to_string())
        }
    }

    fn text(&self, field: &Field, s: &str) -> Result<Value, String> {
        match &field.values {
            Some(allowed) if !allowed.iter().any(|a| a == s) => {
                Err(format!("expected one of {}, got {s:?}", allowed.join(", ")))
            }
            _ => Ok(Value::Text(s.to_string())),
        }
    }

    fn time(&self, s: &str) -> Result<Value, String> {
        self.cal.parse_time(s.trim()).map(Value::Time).map_err(|_| {
            format!("expected a time (2026-03-31T23:30:00+08:00, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD), got {s:?}")
        })
    }
}

fn expected(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Text => "a string",
        FieldType::Integer => "an integer",
        FieldType::Real => "a real number",
        FieldType::Bool => "true/false/1/0",
        FieldType::Time => "a time string",
    }
}
