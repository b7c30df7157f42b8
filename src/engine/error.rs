//! The one error type of the application layer: what a command or a request
//! can fail with, typed so that each edge (the CLI, the HTTP API) can say it
//! its own way.

use crate::config::edit::EditError;
use crate::diag::{Diagnostic, Diagnostics, hint};
use crate::store::StoreError;

/// What kind of thing an id failed to name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Team,
    Scorecard,
    Kpi,
    Entity,
    Owner,
    /// A period with a frozen assessment (SPEC 16).
    FrozenPeriod,
    /// A version of the config history.
    Version,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Team => "team",
            Kind::Scorecard => "scorecard",
            Kind::Kpi => "KPI",
            Kind::Entity => "entity",
            Kind::Owner => "owner",
            Kind::FrozenPeriod => "frozen period",
            Kind::Version => "config version",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration on disk does not check.
    #[error("{0}")]
    Config(Diagnostics),
    /// A candidate configuration (an edit, a reload) was refused; nothing changed.
    #[error("{message}")]
    Rejected {
        message: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// An id that names nothing; `hint` is a "did you mean" or the known ids.
    #[error("unknown {} '{id}'{hint}", kind.name())]
    Unknown {
        kind: Kind,
        id: String,
        hint: String,
    },
    /// A malformed input value (a period, an instant), named by `field`.
    #[error("{field}: {message}")]
    BadInput {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file of the deployment could not be read or written.
    #[error("{0}")]
    Io(String),
    /// A write failed because the disk (of the root or the database) is full.
    #[error("{0}")]
    DiskFull(String),
}

/// At most this many known ids are listed when no close one exists.
const LISTED: usize = 20;

impl EngineError {
    /// `id` names no `kind` among `known`: a "did you mean" hint, or the
    /// known ids when there are few and none is close.
    pub fn unknown<'a>(
        kind: Kind,
        id: &str,
        known: impl Iterator<Item = &'a str> + Clone,
    ) -> EngineError {
        let close = hint(id, known.clone());
        let hint = if close.is_empty() {
            let all: Vec<&str> = known.collect();
            match all.len() {
                0 => String::new(),
                n if n <= LISTED => format!(" (known: {})", all.join(", ")),
                _ => String::new(),
            }
        } else {
            close
        };
        EngineError::Unknown {
            kind,
            id: id.to_string(),
            hint,
        }
    }

    pub fn bad_input(field: &'static str, message: impl std::fmt::Display) -> EngineError {
        EngineError::BadInput {
            field,
            message: message.to_string(),
        }
    }

    /// An I/O failure of `context` (e.g. "cannot write kpis/targets.toml"),
    /// a full disk said as such.
    pub fn from_io(context: impl std::fmt::Display, e: &std::io::Error) -> EngineError {
        if e.kind() == std::io::ErrorKind::StorageFull {
            EngineError::DiskFull(format!("{context}: the disk is full; nothing was changed"))
        } else {
            EngineError::Io(format!("{context}: {e}"))
        }
    }

    pub fn rejected(message: impl Into<String>, diagnostics: Vec<Diagnostic>) -> EngineError {
        EngineError::Rejected {
            message: message.into(),
            diagnostics,
        }
    }
}
