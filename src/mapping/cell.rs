//! One source cell (or an `expr` result) into a typed value, by a mapping's
//! reading rules: the time forms of SPEC 3.3 then `time_formats` (read in
//! settings.timezone unless they carry an offset; `%d`, `%m`, `%H` accept
//! unpadded numbers), the decimal separator with thousands separators
//! dropped, and bool as true/false/1/0. An empty text is NULL here; whether
//! NULL is allowed is checked on the whole record.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::period::Calendar;
use crate::store::{Field, FieldType, Value};

/// The reading rules of one part of a mapping.
#[derive(Clone)]
pub struct Rules {
    pub cal: Calendar,
    pub time_formats: Vec<String>,
    pub decimal: char,
}

impl Rules {
    /// Converts text to the field's type.
    pub fn convert(&self, field: &Field, text: &str) -> Result<Value, String> {
        if text.is_empty() {
            return Ok(Value::Null);
        }
        let got = || format!("got {text:?}");
        match field.ty {
            FieldType::Text => match &field.values {
                Some(allowed) if !allowed.iter().any(|a| a == text) => Err(format!(
                    "{text:?} is not one of {} (map it with values = {{ … }})",
                    allowed.join(", ")
                )),
                _ => Ok(Value::Text(text.to_string())),
            },
            FieldType::Integer => match self.number(text) {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::Int(f as i64)),
                _ => Err(format!("expected an integer, {}", got())),
            },
            FieldType::Real => match self.number(text) {
                Some(f) => Ok(Value::Real(f)),
                None => Err(format!(
                    "expected a number (decimal {:?}), {}",
                    self.decimal,
                    got()
                )),
            },
            FieldType::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true/false/1/0, {}", got())),
            },
            FieldType::Time => self.time(text).map(Value::Time).ok_or_else(|| {
                let mut forms: Vec<&str> = self.time_formats.iter().map(String::as_str).collect();
                forms.extend(["RFC 3339", "YYYY-MM-DD HH:MM:SS", "YYYY-MM-DD"]);
                format!(
                    "{text:?} matches none of the time formats ({})",
                    forms.join(", ")
                )
            }),
        }
    }

    /// A number with the decimal separator and thousands separators of the rules.
    pub fn number(&self, text: &str) -> Option<f64> {
        let t = text.trim();
        let plain = t.bytes().all(|b| {
            b.is_ascii_digit()
                || b == b'-'
                || b == b'+'
                || (b == b'.' && self.decimal == '.')
                || b == b'e'
                || b == b'E'
        });
        let f = if plain {
            t.parse::<f64>().ok()?
        } else {
            let mut s = String::with_capacity(t.len());
            for c in t.chars() {
                match c {
                    c if c == self.decimal => s.push('.'),
                    ',' | '.' | ' ' | '\'' | '’' | '\u{a0}' | '\u{202f}' => {}
                    c => s.push(c),
                }
            }
            s.parse::<f64>().ok()?
        };
        f.is_finite().then_some(f)
    }

    /// A time: the forms of SPEC 3.3, then each of `time_formats`.
    pub fn time(&self, text: &str) -> Option<i64> {
        let t = text.trim();
        if let Ok(ms) = self.cal.parse_time(t) {
            return Some(ms);
        }
        for f in &self.time_formats {
            if f.contains("%z") || f.contains("%:z") || f.contains("%#z") {
                if let Ok(dt) = DateTime::parse_from_str(t, f) {
                    return Some(dt.timestamp_millis());
                }
            } else if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
                return Some(self.cal.local_to_instant(dt));
            } else if let Ok(d) = NaiveDate::parse_from_str(t, f) {
                return Some(self.cal.local_midnight(d));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(decimal: char) -> Rules {
        Rules {
            cal: Calendar::new("Asia/Shanghai", 1).unwrap(),
            time_formats: vec!["%m/%d/%Y".into(), "%d/%m/%Y %H:%M".into()],
            decimal,
        }
    }

    fn field(ty: FieldType) -> Field {
        Field {
            name: "x".into(),
            ty,
            optional: true,
            values: None,
        }
    }

    #[test]
    fn numbers_with_separators() {
        let r = rules('.');
        assert_eq!(r.number("125,000.00"), Some(125_000.0));
        assert_eq!(r.number("1 234.5"), Some(1234.5));
        assert_eq!(r.number("-3"), Some(-3.0));
        let r = rules(',');
        assert_eq!(r.number("1.234,5"), Some(1234.5));
        assert_eq!(r.number("1’234,5"), Some(1234.5));
        assert_eq!(
            r.convert(&field(FieldType::Real), "abc").unwrap_err(),
            "expected a number (decimal ','), got \"abc\""
        );
    }

    #[test]
    fn time_formats_unpadded_and_in_the_zone() {
        let r = rules('.');
        // 2026-11-14 00:00 in Shanghai = 2026-11-13T16:00Z.
        assert_eq!(r.time("11/14/2026"), Some(1_794_585_600_000));
        assert_eq!(
            r.time("29/2/2016 1:16"),
            r.cal.parse_time("2016-02-29 01:16:00").ok()
        );
        let e = r
            .convert(&field(FieldType::Time), "31/02/2026")
            .unwrap_err();
        assert_eq!(
            e,
            "\"31/02/2026\" matches none of the time formats (%m/%d/%Y, %d/%m/%Y %H:%M, RFC 3339, YYYY-MM-DD HH:MM:SS, YYYY-MM-DD)"
        );
    }
}
