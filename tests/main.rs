//! The end-to-end tests, in one test binary: the real `kpi` binary, the real
//! SQLite file, the real `kpi serve` on 127.0.0.1, and a real browser where
//! Chromium is installed. Helpers are in `util`.

mod util;

mod alerts_cli;
mod alerts_delivery;
mod alerts_robots;
mod alerts_state;
mod browser;
mod cli;
mod cli_usage;
mod column_snapshot;
mod dashboard_pages;
mod freeze;
mod history;
mod mappings;
mod openapi;
mod ops;
mod ops_metrics;
mod people;
mod postgres_alerts;
mod postgres_servers;
mod postgres_store;
mod router;
mod server_alerts;
mod server_api;
mod server_dashboard;
mod server_mappings;
mod server_reload;
mod server_robots;
mod tidy;
