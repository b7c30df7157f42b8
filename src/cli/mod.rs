//! The parts of the `kpi` binary: argument types, commands, output.

pub mod args;
pub mod commands;
pub mod entities;
pub mod history;
pub mod log;
pub mod output;
