//! Readers: CSV (any one-byte delimiter), NDJSON and JSON arrays into rows of
//! typed values for one entity, each with the line (or element) it came from.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::rc::Rc;

use super::super::schema::Entity;
use super::super::{StoreError, Value};
use super::cells::RowReader;
use super::{Input, Pos};

/// The UTF-8 byte order mark, accepted (and dropped) at the start of any input.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a reader passes on, in input order.
pub enum Parsed {
    /// A row's position and its values or problems.
    Row(Pos, Result<Vec<Value>, Vec<String>>),
    /// A problem of the input itself (header, unreadable row), as a full message.
    Problem(String),
}

/// Reads every row of `input` into `out`, which may stop the reading by an error.
pub fn read(
    reader: &RowReader<'_>,
    label: &str,
    input: Input<'_>,
    out: &mut dyn FnMut(Parsed) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    match input {
        Input::Csv(r) => read_csv(reader, label, r, b',', out),
        Input::Delimited(r, d) => read_csv(reader, label, r, d, out),
        Input::Ndjson(r) => read_ndjson(reader, label, r, out),
        Input::Json(rows) => {
            for (i, row) in rows.iter().enumerate() {
                out(Parsed::Row(Pos::Line(i as u64 + 1), json_row(reader, row)))?;
            }
            Ok(())
        }
        Input::JsonArray(rows) => {
            for (i, (row, line)) in rows.rows.iter().zip(&rows.lines).enumerate() {
                let pos = Pos::Element {
                    line: *line,
                    n: i as u64 + 1,
                };
                out(Parsed::Row(pos, json_row(reader, row)))?;
            }
            Ok(())
        }
    }
}

/// A CSV reader over `input` with a header row and `delimiter`, and what it
/// needs to name a record's physical line ([`BlankLines::line`]).
pub fn csv_reader<'a>(
    input: Box<dyn Read + 'a>,
    delimiter: u8,
) -> (csv::Reader<Box<dyn Read + 'a>>, BlankLines) {
    let blanks = BlankLines::default();
    let tracking = Tracking {
        inner: input,
        offset: 0,
        prev: [b'\n', b'\n'],
        blanks: blanks.clone(),
    };
    let reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(Box::new(tracking) as Box<dyn Read + 'a>);
    (reader, blanks)
}

/// The newlines of blank lines read so far (offset, preceded by `\r`), of
/// which only those at or after the current record are kept.
///
/// Why: the csv crate skips blank lines but gives the record after them the
/// position where the blank run began, while messages must name the physical
/// line where the row starts.
#[derive(Clone, Default)]
pub struct BlankLines(Rc<RefCell<VecDeque<(u64, bool)>>>);

impl BlankLines {
    /// The physical line where the record at `pos` starts.
    pub fn line(&self, pos: &csv::Position) -> u64 {
        let mut q = self.0.borrow_mut();
        while q.front().is_some_and(|(n, _)| *n < pos.byte()) {
            q.pop_front();
        }
        let (mut at, mut skipped) = (pos.byte(), 0);
        for &(n, cr) in q.iter() {
            if n == at || (cr && n == at + 1) {
                skipped += 1;
                at = n + 1;
            } else {
                break;
            }
        }
        pos.line() + skipped
    }
}

/// Passes bytes on, noting where blank lines end.
struct Tracking<R> {
    inner: R,
    offset: u64,
    /// The last two bytes read (the one before last first).
    prev: [u8; 2],
    blanks: BlankLines,
}

impl<R: Read> Read for Tracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut q = self.blanks.0.borrow_mut();
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' {
                let cr = self.prev[1] == b'\r';
                if self.prev[1] == b'\n' || (cr && self.prev[0] == b'\n') {
                    q.push_back((self.offset + i as u64, cr));
                }
            }
            self.prev = [self.prev[1], b];
        }
        self.offset += n as u64;
        Ok(n)
    }
}

fn read_csv(
    reader: &RowReader<'_>,
    label: &str,
    input: Box<dyn Read + '_>,
    delimiter: u8,
    out: &mut dyn FnMut(Parsed) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let (mut csv, blanks) = csv_reader(input, delimiter);
    let header = match csv.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return out(Parsed::Problem(format!(
                "{label}:1: cannot read the header row: {e}"
            )));
        }
    };
    let columns = match csv_columns(reader.entity, &header) {
        Ok(c) => c,
        Err(messages) => {
            for m in messages {
                out(Parsed::Problem(format!("{label}:1: {m}")))?;
            }
            return Ok(());
        }
    };
    let mut record = csv::ByteRecord::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return out(Parsed::Problem(format!(
                    "{label}:{line}: cannot read the row: {e}"
                )));
            }
        }
        let line = record.position().map_or(0, |p| blanks.line(p));
        let row = if record.len() != header.len() {
            Err(vec![format!(
                "expected {} cells, got {}",
                header.len(),
                record.len()
            )])
        } else {
            csv_row(reader, &columns, &record)
        };
        out(Parsed::Row(Pos::Line(line), row))?;
    }
    Ok(())
}

/// Maps header cells to field positions; unknown, repeated or missing columns are errors.
fn csv_columns(
    entity: &Entity,
    header: &csv::ByteRecord,
) -> Result<Vec<Option<usize>>, Vec<String>> {
    let mut messages = Vec::new();
    let mut by_field: Vec<Option<usize>> = vec![None; entity.fields.len()];
    for (col, name) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(name);
        let name = name.trim();
        match entity.field_index(name) {
            Some(i) => match by_field[i] {
                Some(first) => messages.push(format!(
                    "column '{name}' appears twice (columns {} and {}): which one to import is ambiguous",
                    first + 1,
                    col + 1
                )),
                None => by_field[i] = Some(col),
            },
            None => messages.push(format!(
                "unknown column '{name}': {}",
                entity.unknown_field(name)
            )),
        }
    }
    for (i, f) in entity.fields.iter().enumerate() {
        if by_field[i].is_none() && !f.optional {
            messages.push(format!(
                "missing column '{}' (a required field of {})",
                f.name, entity.name
            ));
        }
    }
    if messages.is_empty() {
        Ok(by_field)
    } else {
        Err(messages)
    }
}

fn csv_row(
    reader: &RowReader<'_>,
    columns: &[Option<usize>],
    record: &csv::ByteRecord,
) -> Result<Vec<Value>, Vec<String>> {
    let mut values = Vec::with_capacity(columns.len());
    let mut messages = Vec::new();
    for (field, col) in reader.entity.fields.iter().zip(columns) {
        let raw = col.and_then(|c| record.get(c)).unwrap_or_default();
        let value = std::str::from_utf8(raw)
            .map_err(|_| "the value is not valid UTF-8".to_string())
            .and_then(|s| reader.text_value(field, s));
        match value {
            Ok(v) => values.push(v),
            Err(m) => messages.push(format!("field '{}': {m}", field.name)),
        }
    }
    if messages.is_empty() {
        Ok(values)
    } else {
        Err(messages)
    }
}

fn read_ndjson(
    reader: &RowReader<'_>,
    label: &str,
    mut input: Box<dyn Read + '_>,
    out: &mut dyn FnMut(Parsed) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::Read {
            label: label.to_string(),
            message: e.to_string(),
        })?;
    let text = match std::str::from_utf8(bytes.strip_prefix(BOM).unwrap_or(&bytes)) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            return out(Parsed::Problem(format!("{label}:{line}: not valid UTF-8")));
        }
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => json_row(reader, &v),
            Err(e) => Err(vec![format!("invalid JSON: {e}")]),
        };
        out(Parsed::Row(Pos::Line(i as u64 + 1), row))?;
    }
    Ok(())
}

/// A parsed JSON array with the line where each element starts.
#[derive(Debug, Clone, Default)]
pub struct JsonRows {
    pub rows: Vec<serde_json::Value>,
    pub lines: Vec<u64>,
}

/// Parses a JSON array (a UTF-8 BOM is accepted) and finds the line of each element.
pub fn json_array(bytes: &[u8]) -> Result<JsonRows, String> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON array: {e}"))?;
    let lines = element_lines(bytes);
    Ok(JsonRows {
        lines: (0..rows.len())
            .map(|i| lines.get(i).copied().unwrap_or(1))
            .collect(),
        rows,
    })
}

/// The line of each top-level element of a valid JSON array.
fn element_lines(bytes: &[u8]) -> Vec<u64> {
    let mut lines = Vec::new();
    let (mut line, mut depth, mut in_str, mut escaped, mut want) =
        (1u64, 0u32, false, false, false);
    for &b in bytes {
        if b == b'\n' {
            line += 1;
        }
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if want && !b.is_ascii_whitespace() && b != b']' {
            lines.push(line);
            want = false;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 1 {
                    want = true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => want = true,
            _ => {}
        }
    }
    lines
}

/// One JSON object → typed values. Missing keys are NULL; unknown keys are errors.
pub fn json_row(
    reader: &RowReader<'_>,
    row: &serde_json::Value,
) -> Result<Vec<Value>, Vec<String>> {
    let Some(obj) = row.as_object() else {
        return Err(vec![format!("expected a JSON object, got {}", short(row))]);
    };
    let mut messages: Vec<String> = obj
        .keys()
        .filter(|k| reader.entity.field(k).is_none())
        .map(|k| format!("unknown field '{k}': {}", reader.entity.unknown_field(k)))
        .collect();
    let mut values = Vec::with_capacity(reader.entity.fields.len());
    for field in &reader.entity.fields {
        match reader.json_value(
            field,
            obj.get(&field.name).unwrap_or(&serde_json::Value::Null),
        ) {
            Ok(v) => values.push(v),
            Err(m) => messages.push(format!("field '{}': {m}", field.name)),
        }
    }
    if messages.is_empty() {
        Ok(values)
    } else {
        Err(messages)
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_after_blank_lines_is_named_by_its_own_line() {
        let text = "id,name\na,A\n\n\r\nb,B\n\"c\n\nx\",C\n\nd,D\n";
        let (mut csv, blanks) = super::csv_reader(Box::new(text.as_bytes()), b',');
        let mut rec = csv::ByteRecord::new();
        let mut lines = Vec::new();
        while csv.read_byte_record(&mut rec).unwrap() {
            lines.push(blanks.line(rec.position().unwrap()));
        }
        assert_eq!(lines, [2, 5, 6, 10]);
    }

    #[test]
    fn finds_the_line_of_each_array_element() {
        let text = "\u{feff}[\n  {\"a\": \"x,]\\\"\"},\n\n  {\"b\": [1, 2]}, 3\n]";
        let rows = super::json_array(text.as_bytes()).unwrap();
        assert_eq!(rows.rows.len(), 3);
        assert_eq!(rows.lines, [2, 4, 4]);
    }
}
