#!/bin/sh
# kpi-engine against DuckDB on the same work, in one run (issue 17; see BENCHMARKS.md).
#
#   benches/duckdb.sh                      # about 100k deals, 3 runs of each step
#   benches/duckdb.sh --deals 1000000      # ~1M deals (the demo database takes a few minutes)
#   benches/duckdb.sh --deals 1000000 --keep --runs 5   # reuse the database and CSVs
#
# Installs the `duckdb` Python package into a virtual environment under target/duckdb-venv
# (once), builds the release `kpi`, then runs benches/duckdb/bench.py with the arguments given
# (--help lists them). Work files go to target/bench_duckdb/N. Needs python3 (3.11 or later,
# with venv). Exits 1 when any engine value differs from DuckDB's.
set -eu
cd "$(dirname "$0")/.."

venv=target/duckdb-venv
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "duckdb>=1.1"
fi
cargo build --release --bin kpi
exec "$venv/bin/python" benches/duckdb/bench.py "$@"
