//! Typed field values: what a record holds once it has been read and checked.
//!
//! Times are UTC instants in milliseconds since the Unix epoch; that is also how
//! they are stored in SQLite (an INTEGER column), so comparisons stay numeric.

/// One field value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// UTC instant, milliseconds since the Unix epoch.
    Time(i64),
}
