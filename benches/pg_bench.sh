#!/usr/bin/env bash
# The PostgreSQL store at scale (docs/scale-out.md): the same demo CRM in SQLite and in
# PostgreSQL, then
#   1. writing it: `kpi demo` into each store;
#   2. full evaluation: every scorecard for every subject on both stores (pushdown vs embedded),
#      wall time and peak RSS of each `kpi eval`;
#   3. five sales KPIs: the pushdown vs hand-written SQL on the same PostgreSQL;
#   4. import: `kpi import deals` (checked, COPY, one transaction) vs `psql \copy` of the same CSV.
#
#     benches/pg_bench.sh postgres://USER@HOST:PORT [SCALE]     # SCALE 20833 ≈ 1M deals
#
# Needs target/release/kpi (cargo build --release), psql and /usr/bin/time. Makes and drops the
# databases kpi_bench_a (records), kpi_bench_b and kpi_bench_c (imports) on that server.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${1:?usage: benches/pg_bench.sh postgres://USER@HOST:PORT [SCALE]}
SCALE=${2:-20833}
K=${KPI_BIN:-$PWD/target/release/kpi}
UNTIL=2026-11-21
ASOF=2026-11-21T00:00:00+08:00
PERIOD=2026-Q3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r kpis scripts "$WORK/"
for db in kpi_bench_a kpi_bench_b kpi_bench_c; do
  psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
done
PG=$SERVER/kpi_bench_a
LITE=$WORK/crm.db
timed() { /usr/bin/time -f "%e s, peak RSS %M KB" "$@"; }

echo "== kpi demo --scale $SCALE (seed 2026, until $UNTIL)"
echo -n "SQLite:     "; timed "$K" --root "$WORK" --db "$LITE" demo --scale "$SCALE" --seed 2026 --until $UNTIL 2>&1 >/dev/null
echo -n "PostgreSQL: "; timed "$K" --root "$WORK" --db "$PG" demo --scale "$SCALE" --seed 2026 --until $UNTIL 2>&1 >/dev/null
psql "$PG" -qAtc "VACUUM ANALYZE" -c "SELECT 'deals: ' || count(*) FROM deals"

echo "== full evaluation, $PERIOD as of $ASOF (every scorecard, every subject)"
for card in sales service marketing sales_reps; do
  for db in "$LITE" "$PG"; do
    name=$([ "$db" = "$PG" ] && echo PostgreSQL || echo SQLite)
    echo -n "$card on $name: "
    timed "$K" --root "$WORK" --db "$db" eval --scorecard $card --period $PERIOD --as-of $ASOF --format json 2>&1 >"$WORK/$card-$name.json"
  done
  cmp -s <(grep -v loaded_at "$WORK/$card-SQLite.json") <(grep -v loaded_at "$WORK/$card-PostgreSQL.json") \
    && echo "  identical JSON" || echo "  JSON differs (see docs/postgres.md: last bits of real sums)"
done

echo "== five sales KPIs for every team, $PERIOD: pushdown vs hand-written SQL on PostgreSQL"
KPIS=revenue,deals_won,win_rate,avg_deal_size,sales_cycle_days
echo -n "kpi eval --kpi (pushdown): "; timed "$K" --root "$WORK" --db "$PG" eval --kpi $KPIS --period $PERIOD --as-of $ASOF --format json 2>&1 >/dev/null
echo -n "hand-written SQL (psql):   "
timed psql "$PG" -qAt -v lo='2026-07-01 00:00:00+08' -v hi='2026-10-01 00:00:00+08' -f benches/pg/sales_kpis.sql 2>&1 >/dev/null

echo "== import of every deal: kpi import (checked, COPY, one transaction) vs psql \\copy"
CSV=$WORK/deals.csv
ts() { echo "to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS $1"; }
psql "$PG" -qc "\\copy (SELECT id, team, owner, customer, stage, amount, $(ts created_at), $(ts closed_at), campaign FROM deals) TO '$CSV' CSV HEADER"
psql "$PG" -qc "\\copy teams TO '$WORK/teams.csv' CSV HEADER" -c "\\copy (SELECT id, name, team, email, active::int AS active FROM owners) TO '$WORK/owners.csv' CSV HEADER"
for db in kpi_bench_b kpi_bench_c; do
  "$K" --root "$WORK" --db "$SERVER/$db" import teams "$WORK/teams.csv" >/dev/null
  "$K" --root "$WORK" --db "$SERVER/$db" import owners "$WORK/owners.csv" >/dev/null
done
echo -n "kpi import deals: "; timed "$K" --root "$WORK" --db "$SERVER/kpi_bench_b" import deals "$CSV" 2>&1 >/dev/null
echo -n "psql \\copy:       "; timed psql "$SERVER/kpi_bench_c" -qc "\\copy deals (id, team, owner, customer, stage, amount, created_at, closed_at, campaign) FROM '$CSV' CSV HEADER" 2>&1 >/dev/null
psql "$SERVER/kpi_bench_b" -qAtc "SELECT 'imported: ' || count(*) FROM deals"
