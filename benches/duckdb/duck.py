"""DuckDB side of the benchmark of issue 17: load the CSVs, compute the 35 library KPIs.

Run by bench.py as a child process (so that its peak RSS is its own):

    python duck.py load DB CSV_DIR SCHEMA_JSON THREADS           -> JSON timings on stdout
    python duck.py compute DB PARAMS_JSON THREADS RUNS OUT_JSON  -> JSON timings on stdout

`load` creates DB anew and loads every ENTITY.csv of CSV_DIR into a table of the same name
with the schema's types (text VARCHAR, integer BIGINT, real DOUBLE, bool BOOLEAN, time
TIMESTAMPTZ), the way an analyst would (CREATE TABLE AS SELECT FROM read_csv with the columns
given, no sniffing).

`compute` opens DB and computes every KPI of SPEC section 6 for every team and every period of
PARAMS (see bench.py: `duck_params`), RUNS times in this process, and writes the values of the
last run to OUT_JSON as {kpi: {team: {period: value or null}}}.

How the SQL is written (what an expert would do on a column store):

- Time is cut into buckets once: the bounds are every period start and end plus the cut points
  of the like-for-like periods of SPEC 16 (as-of in an open period and the same span of the
  previous one), sorted; a time's bucket is the number of bounds at or before it, NULL is
  bucket 1000 (after everything). "In P" is lo <= b < hi, "before P.end" is b < hi,
  "NULL or at or after P.start" is b >= lo.
- One pass per measure over each table, GROUP BY team and the buckets it needs: the result is a
  few thousand rows whatever the data size.
- The roll-up (a record counts for its team and every ancestor) joins those small results
  with the closure table `anc(team, ancestor)` (a recursive CTE over teams) and sums. Distinct
  counts (stage conversions, repeat purchases) count a deal or a customer once per subtree:
  one GROUP BY key, and a key whose rows all carry one team (the usual case) counts for that
  team's ancestors, so it is reduced to a small (team, shape) table before the roll-up; keys
  spread over several teams go through (ancestor, key). Stage conversions keep per deal a bit
  set of the buckets of its `from` events and the first bucket of its `to` events, so one
  scan of stage_events answers every period; repeat purchases keep per customer the two
  earliest win buckets (`min(b, 2)`).
- Marketing ROI joins won deals with campaigns (hash join on campaigns.id) and counts a return
  for an ancestor whose subtree holds both the deal's and the campaign's team.
- The periods are a small table crossed with the grouped results; the measures are FILTERed
  sums over bucket ranges, one small table each; the KPIs join them per (team, period) and
  divide with `nullif(denominator, 0)`, NULL being "no data".
"""

import json
import os
import resource
import sys
import time

import duckdb

TYPES = {
    "text": "VARCHAR",
    "integer": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "time": "TIMESTAMPTZ",
}

NULL_BUCKET = 1000


def load(db, csv_dir, schema_json, threads):
    schema = json.loads(open(schema_json).read())
    for suffix in ("", ".wal"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    con = duckdb.connect(db)
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    timings = {}
    rows = {}
    started = time.perf_counter()
    for entity, fields in schema.items():
        path = os.path.join(csv_dir, f"{entity}.csv")
        cols = ", ".join(f"'{f}': '{TYPES[t]}'" for f, t in fields)
        t = time.perf_counter()
        con.execute(
            f"CREATE TABLE {entity} AS SELECT * FROM read_csv('{path}', header = true, "
            f"delim = ',', quote = '\"', escape = '\"', auto_detect = false, "
            f"columns = {{{cols}}})"
        )
        con.execute("CHECKPOINT")
        timings[entity] = time.perf_counter() - t
        rows[entity] = con.execute(f"SELECT count(*) FROM {entity}").fetchone()[0]
    total = time.perf_counter() - started
    con.close()
    return {"total": total, "per_entity": timings, "rows": rows}


def ts(iso):
    return f"TIMESTAMPTZ '{iso}'"


def bucket(col, bounds):
    """The bucket of a time column: how many bounds are at or before it; NULL -> 1000."""
    whens = " ".join(f"WHEN {col} < {ts(b)} THEN {i}" for i, b in enumerate(bounds))
    return f"(CASE WHEN {col} IS NULL THEN {NULL_BUCKET} {whens} ELSE {len(bounds)} END)"


def measures(p):
    """(name, SQL) of the measure queries; each makes a temp table m_NAME(team, j, ...)."""
    bounds = p["bounds"]
    b = lambda col: bucket(col, bounds)  # noqa: E731
    q = []
    # The roll-up of a grouped table: every ancestor gets the rows of its subtree.
    q.append(
        (
            "deals",
            f"""
        WITH g AS (
            SELECT team, {b('created_at')} AS cb, {b('closed_at')} AS kb, stage,
                   count(*) AS n, sum(amount) AS amt,
                   sum(epoch_ms(closed_at) - epoch_ms(created_at)) AS dur
            FROM deals GROUP BY ALL),
        r AS (
            SELECT a.ancestor AS team, cb, kb, stage,
                   sum(n) AS n, sum(amt) AS amt, sum(dur) AS dur
            FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(amt) FILTER (stage = 'won' AND kb >= lo AND kb < hi) AS revenue,
            sum(n)   FILTER (stage = 'won' AND kb >= lo AND kb < hi) AS won,
            sum(n)   FILTER (stage = 'lost' AND kb >= lo AND kb < hi) AS lost,
            sum(dur) FILTER (stage = 'won' AND kb >= lo AND kb < hi) AS won_ms,
            sum(amt) FILTER (stage = 'won' AND kb >= clo AND kb < chi) AS rev_to_date,
            sum(amt) FILTER (stage = 'won' AND kb >= plo AND kb < phi) AS rev_prev_span,
            sum(n)   FILTER (cb < hi AND kb >= lo) AS pipeline,
            sum(amt) FILTER (stage = 'won' AND kb < hi) AS won_to_date
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "forecasts",
            """
        SELECT a.ancestor AS team, p.j, sum(f.amount) AS forecast
        FROM forecasts f JOIN anc a USING (team) JOIN periods p ON p.id = f.period
        GROUP BY ALL""",
        )
    )
    # Both stage conversions in one scan of stage_events. A deal counts once per subtree, so
    # the sets are per (ancestor, deal); but a deal whose events all carry one team (the usual
    # case) counts for exactly that team's ancestors, so one GROUP BY deal reduces those to a
    # few thousand (team, bit sets) shapes before the roll-up. Only deals whose events carry
    # several teams take the general path through (ancestor, deal).
    q.append(
        (
            "conversions",
            f"""
        WITH e AS NOT MATERIALIZED (
            SELECT team, deal, stage, {b('entered_at')} AS eb FROM stage_events
            WHERE stage IN ('lead', 'won', 'demo', 'quote')),
        per_deal AS (
            SELECT deal, min(team) AS t0, max(team) AS t1,
                   bit_or(1::UBIGINT << eb) FILTER (stage = 'lead') AS lead_m,
                   min(eb) FILTER (stage = 'won') AS won_b,
                   bit_or(1::UBIGINT << eb) FILTER (stage = 'demo') AS demo_m,
                   min(eb) FILTER (stage = 'quote') AS quote_b
            FROM e GROUP BY deal),
        single AS (
            SELECT t0 AS team, lead_m, won_b, demo_m, quote_b, count(*) AS n
            FROM per_deal WHERE t0 = t1 GROUP BY ALL),
        several AS (
            SELECT a.ancestor AS team, e.deal,
                   bit_or(1::UBIGINT << eb) FILTER (stage = 'lead') AS lead_m,
                   min(eb) FILTER (stage = 'won') AS won_b,
                   bit_or(1::UBIGINT << eb) FILTER (stage = 'demo') AS demo_m,
                   min(eb) FILTER (stage = 'quote') AS quote_b
            FROM e JOIN per_deal d ON d.deal = e.deal AND d.t0 <> d.t1
            JOIN anc a ON a.team = e.team GROUP BY ALL),
        shapes AS (
            SELECT a.ancestor AS team, lead_m, won_b, demo_m, quote_b, sum(n) AS n
            FROM single JOIN anc a USING (team) GROUP BY ALL
            UNION ALL
            SELECT team, lead_m, won_b, demo_m, quote_b, count(*) AS n
            FROM several GROUP BY ALL)
        SELECT s.team, p.j,
            sum(n) FILTER (lead_m & p.mask <> 0) AS lead_started,
            sum(n) FILTER (lead_m & p.mask <> 0 AND won_b < hi) AS lead_won,
            sum(n) FILTER (demo_m & p.mask <> 0) AS demo_started,
            sum(n) FILTER (demo_m & p.mask <> 0 AND quote_b < hi) AS demo_quoted
        FROM shapes s CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    # Repeat purchases: per customer the two earliest win buckets (min(b, 2)); the same
    # single-team shortcut as the conversions.
    q.append(
        (
            "repeat",
            f"""
        WITH w AS NOT MATERIALIZED (
            SELECT team, customer, {b('closed_at')} AS kb FROM deals
            WHERE stage = 'won' AND customer IS NOT NULL AND closed_at IS NOT NULL),
        per_customer AS (
            SELECT customer, min(team) AS t0, max(team) AS t1, min(kb, 2) AS first_two
            FROM w GROUP BY customer),
        single AS (
            SELECT t0 AS team, first_two[1] AS b1, first_two[2] AS b2, count(*) AS n
            FROM per_customer WHERE t0 = t1 GROUP BY ALL),
        several AS (
            SELECT a.ancestor AS team, w.customer, min(kb, 2) AS first_two
            FROM w JOIN per_customer c ON c.customer = w.customer AND c.t0 <> c.t1
            JOIN anc a ON a.team = w.team GROUP BY ALL),
        shapes AS (
            SELECT a.ancestor AS team, b1, b2, sum(n) AS n
            FROM single JOIN anc a USING (team) GROUP BY ALL
            UNION ALL
            SELECT team, first_two[1], first_two[2], count(*) FROM several GROUP BY ALL)
        SELECT s.team, p.j,
            sum(n) FILTER (b1 < hi) AS buyers,
            sum(n) FILTER (b2 < hi) AS repeaters
        FROM shapes s CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "customers",
            f"""
        WITH g AS (
            SELECT team, {b('created_at')} AS cb, {b('churned_at')} AS hb, count(*) AS n
            FROM customers GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, cb, hb, sum(n) AS n
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(n) FILTER (cb >= lo AND cb < hi) AS new,
            sum(n) FILTER (cb < hi AND hb >= hi) AS active,
            sum(n) FILTER (cb < hi) AS to_date,
            sum(n) FILTER (cb < lo AND hb >= lo) AS base,
            sum(n) FILTER (cb < lo AND hb >= hi) AS retained,
            sum(n) FILTER (cb < lo AND hb >= lo AND hb < hi) AS churned_of_base,
            sum(n) FILTER (hb >= lo AND hb < hi) AS churned
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "expenses",
            f"""
        WITH g AS (
            SELECT team, category, {b('spent_at')} AS sb, sum(amount) AS amt
            FROM expenses GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, category, sb, sum(amt) AS amt
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(amt) FILTER (category IN ('marketing', 'sales') AND sb >= lo AND sb < hi)
                AS acquisition,
            sum(amt) FILTER (category = 'service' AND sb >= lo AND sb < hi) AS service
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "subscriptions",
            f"""
        WITH g AS (
            SELECT team, {b('ends_at')} AS eb, renewed, count(*) AS n
            FROM subscriptions GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, eb, renewed, sum(n) AS n
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(n) FILTER (eb >= lo AND eb < hi) AS ending,
            sum(n) FILTER (eb >= lo AND eb < hi AND renewed) AS renewed
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "activities",
            f"""
        WITH g AS (
            SELECT team, {b('occurred_at')} AS ob, count(*) AS n
            FROM activities GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, ob, sum(n) AS n
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j, sum(n) FILTER (ob >= lo AND ob < hi) AS interactions
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "surveys",
            f"""
        WITH g AS (
            SELECT team, kind, {b('answered_at')} AS ab, count(*) AS n, sum(score) AS total,
                   count(*) FILTER (score >= 9) AS promoters,
                   count(*) FILTER (score <= 6) AS detractors
            FROM surveys GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, kind, ab, sum(n) AS n, sum(total) AS total,
                     sum(promoters) AS promoters, sum(detractors) AS detractors
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(n)          FILTER (kind = 'nps' AND ab >= lo AND ab < hi) AS nps_n,
            sum(promoters)  FILTER (kind = 'nps' AND ab >= lo AND ab < hi) AS nps_pro,
            sum(detractors) FILTER (kind = 'nps' AND ab >= lo AND ab < hi) AS nps_det,
            sum(n)          FILTER (kind = 'ces' AND ab >= lo AND ab < hi) AS ces_n,
            sum(total)      FILTER (kind = 'ces' AND ab >= lo AND ab < hi) AS ces_sum,
            sum(n)          FILTER (kind = 'csat' AND ab >= lo AND ab < hi) AS csat_n,
            sum(total)      FILTER (kind = 'csat' AND ab >= lo AND ab < hi) AS csat_sum
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    # Tickets opened in P and tickets resolved in P, from one scan.
    q.append(
        (
            "tickets",
            f"""
        WITH g AS (
            SELECT team, {b('opened_at')} AS ob, {b('resolved_at')} AS rb,
                   count(*) AS n, count(first_response_at) AS answered,
                   sum(epoch_ms(first_response_at) - epoch_ms(opened_at)) AS response_ms,
                   sum(epoch_ms(resolved_at) - epoch_ms(opened_at)) AS resolve_ms,
                   count(rating) AS rated, sum(rating) AS rating
            FROM tickets GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, ob, rb, sum(n) AS n, sum(answered) AS answered,
                     sum(response_ms) AS response_ms, sum(resolve_ms) AS resolve_ms,
                     sum(rated) AS rated, sum(rating) AS rating
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(n)           FILTER (ob >= lo AND ob < hi) AS opened,
            sum(answered)    FILTER (ob >= lo AND ob < hi) AS answered,
            sum(response_ms) FILTER (ob >= lo AND ob < hi) AS response_ms,
            sum(n)           FILTER (ob >= lo AND ob < hi AND rb < hi) AS resolved_by_end,
            sum(n)           FILTER (rb >= lo AND rb < hi) AS resolved,
            sum(resolve_ms)  FILTER (rb >= lo AND rb < hi) AS resolve_ms,
            sum(rated)       FILTER (rb >= lo AND rb < hi) AS rated,
            sum(rating)      FILTER (rb >= lo AND rb < hi) AS rating
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "campaigns",
            f"""
        WITH g AS (
            SELECT team, {b('ended_at')} AS eb, sum(cost) AS cost, sum(budget) AS budget,
                   sum(leads) AS leads, sum(participants) AS participants
            FROM campaigns GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, eb, sum(cost) AS cost, sum(budget) AS budget,
                     sum(leads) AS leads, sum(participants) AS participants
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(cost)         FILTER (eb >= lo AND eb < hi) AS cost,
            sum(budget)       FILTER (eb >= lo AND eb < hi) AS budget,
            sum(leads)        FILTER (eb >= lo AND eb < hi) AS leads,
            sum(participants) FILTER (eb >= lo AND eb < hi) AS participants
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    # Returns: won deals of the subtree whose campaign (of the subtree) ended in P, closed
    # before P.end; grouped by (deal team, campaign team) first, then per common ancestor.
    q.append(
        (
            "roi",
            f"""
        WITH g AS (
            SELECT d.team AS deal_team, c.team AS campaign_team,
                   {b('c.ended_at')} AS eb, {b('d.closed_at')} AS kb, sum(d.amount) AS amt
            FROM deals d JOIN campaigns c ON c.id = d.campaign
            WHERE d.stage = 'won' GROUP BY ALL),
        r AS (SELECT ad.ancestor AS team, eb, kb, sum(amt) AS amt
              FROM g JOIN anc ad ON ad.team = g.deal_team
              JOIN anc ac ON ac.team = g.campaign_team AND ac.ancestor = ad.ancestor
              GROUP BY ALL)
        SELECT r.team, p.j, sum(amt) FILTER (eb >= lo AND eb < hi AND kb < hi) AS returns
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    q.append(
        (
            "web_traffic",
            f"""
        WITH g AS (
            SELECT team, {b('day')} AS db, sum(leads) AS leads, sum(visits) AS visits
            FROM web_traffic GROUP BY ALL),
        r AS (SELECT a.ancestor AS team, db, sum(leads) AS leads, sum(visits) AS visits
              FROM g JOIN anc a USING (team) GROUP BY ALL)
        SELECT r.team, p.j,
            sum(leads)  FILTER (db >= lo AND db < hi) AS leads,
            sum(visits) FILTER (db >= lo AND db < hi) AS visits
        FROM r CROSS JOIN periods p GROUP BY ALL""",
        )
    )
    return q


# The measures each KPI reads, one row per (team, period): (column, source). A sum over no
# rows is 0 (coalesce).
COLUMNS = [
    ("revenue", "d.revenue"),
    ("won", "d.won"),
    ("lost", "d.lost"),
    ("won_ms", "d.won_ms"),
    ("rev_to_date", "d.rev_to_date"),
    ("rev_prev_span", "d.rev_prev_span"),
    ("pipeline", "d.pipeline"),
    ("won_to_date", "d.won_to_date"),
    ("forecast", "f.forecast"),
    ("lead_started", "c.lead_started"),
    ("lead_won", "c.lead_won"),
    ("demo_started", "c.demo_started"),
    ("demo_quoted", "c.demo_quoted"),
    ("buyers", "rp.buyers"),
    ("repeaters", "rp.repeaters"),
    ("cust_new", "cu.new"),
    ("cust_active", "cu.active"),
    ("cust_to_date", "cu.to_date"),
    ("cust_base", "cu.base"),
    ("cust_retained", "cu.retained"),
    ("cust_churned_of_base", "cu.churned_of_base"),
    ("cust_churned", "cu.churned"),
    ("acquisition", "e.acquisition"),
    ("service", "e.service"),
    ("ending", "s.ending"),
    ("renewed", "s.renewed"),
    ("interactions", "ac.interactions"),
    ("nps_n", "sv.nps_n"),
    ("nps_pro", "sv.nps_pro"),
    ("nps_det", "sv.nps_det"),
    ("ces_n", "sv.ces_n"),
    ("ces_sum", "sv.ces_sum"),
    ("csat_n", "sv.csat_n"),
    ("csat_sum", "sv.csat_sum"),
    ("opened", "t.opened"),
    ("answered", "t.answered"),
    ("response_ms", "t.response_ms"),
    ("resolved_by_end", "t.resolved_by_end"),
    ("resolved", "t.resolved"),
    ("resolve_ms", "t.resolve_ms"),
    ("rated", "t.rated"),
    ("rating", "t.rating"),
    ("cost", "cp.cost"),
    ("budget", "cp.budget"),
    ("leads", "cp.leads"),
    ("participants", "cp.participants"),
    ("returns", "r.returns"),
    ("web_leads", "w.leads"),
    ("visits", "w.visits"),
]

# KPIs other KPIs are built from, computed first (x / nullif(y, 0): no data when y is 0).
DERIVED = [
    ("win_rate", "won::DOUBLE / nullif(won + lost, 0)"),
    ("avg_deal_size", "revenue / nullif(won, 0)"),
    ("sales_cycle_days", "won_ms::DOUBLE / 86400000 / nullif(won, 0)"),
]

# Every KPI of the library: (id, SQL expression over COLUMNS and DERIVED).
KPIS = [
    ("revenue", "revenue"),
    ("deals_won", "won"),
    ("win_rate", "win_rate"),
    ("avg_deal_size", "avg_deal_size"),
    ("sales_cycle_days", "sales_cycle_days"),
    ("revenue_growth", "(rev_to_date - rev_prev_span) / nullif(rev_prev_span, 0)"),
    ("pipeline_deals", "pipeline"),
    ("sales_velocity", "pipeline * avg_deal_size * win_rate / nullif(sales_cycle_days, 0)"),
    ("forecast_accuracy", "1 - abs(revenue - forecast) / nullif(forecast, 0)"),
    ("lead_to_won", "lead_won::DOUBLE / nullif(lead_started, 0)"),
    ("demo_to_quote", "demo_quoted::DOUBLE / nullif(demo_started, 0)"),
    ("new_customers", "cust_new"),
    ("active_customers", "cust_active"),
    ("retention_rate", "cust_retained::DOUBLE / nullif(cust_base, 0)"),
    ("churn_rate", "cust_churned_of_base::DOUBLE / nullif(cust_base, 0)"),
    ("churn_vs_acquired", "cust_churned::DOUBLE / nullif(cust_new, 0)"),
    ("new_customer_rate", "cust_new::DOUBLE / nullif(cust_active, 0)"),
    ("repeat_purchase_rate", "repeaters::DOUBLE / nullif(buyers, 0)"),
    ("clv", "won_to_date / nullif(cust_to_date, 0)"),
    ("cac", "acquisition / nullif(cust_new, 0)"),
    ("service_cost_per_customer", "service / nullif(cust_active, 0)"),
    ("renewal_rate", "renewed::DOUBLE / nullif(ending, 0)"),
    ("interactions", "interactions"),
    ("interactions_per_customer", "interactions::DOUBLE / nullif(cust_active, 0)"),
    ("nps", "100 * (nps_pro - nps_det)::DOUBLE / nullif(nps_n, 0)"),
    ("ces", "ces_sum::DOUBLE / nullif(ces_n, 0)"),
    ("csat", "csat_sum::DOUBLE / nullif(csat_n, 0)"),
    ("first_response_hours", "response_ms::DOUBLE / 3600000 / nullif(answered, 0)"),
    ("resolution_rate", "resolved_by_end::DOUBLE / nullif(opened, 0)"),
    ("resolution_hours", "resolve_ms::DOUBLE / 3600000 / nullif(resolved, 0)"),
    ("service_rating", "rating::DOUBLE / nullif(rated, 0)"),
    ("marketing_roi", "(returns - cost) / nullif(cost, 0)"),
    ("budget_execution", "cost / nullif(budget, 0)"),
    ("campaign_lead_rate", "leads::DOUBLE / nullif(participants, 0)"),
    ("traffic_to_lead", "web_leads::DOUBLE / nullif(visits, 0)"),
]

ALIASES = [
    ("deals", "d"),
    ("forecasts", "f"),
    ("conversions", "c"),
    ("repeat", "rp"),
    ("customers", "cu"),
    ("expenses", "e"),
    ("subscriptions", "s"),
    ("activities", "ac"),
    ("surveys", "sv"),
    ("tickets", "t"),
    ("campaigns", "cp"),
    ("roi", "r"),
    ("web_traffic", "w"),
]


def periods_sql(p):
    rows = []
    for j, q in enumerate(p["periods"]):
        mask = sum(1 << k for k in range(q["lo"], q["hi"]))
        rows.append(
            f"({j}, '{q['id']}', {q['lo']}, {q['hi']}, {q['clo']}, {q['chi']}, "
            f"{q['plo']}, {q['phi']}, {mask}::UBIGINT)"
        )
    return (
        "CREATE OR REPLACE TEMP TABLE periods AS SELECT * FROM (VALUES "
        + ", ".join(rows)
        + ") v(j, id, lo, hi, clo, chi, plo, phi, mask)"
    )


def compute_once(con, p):
    """Every KPI for every team and period; returns (values, per-step seconds)."""
    steps = {}
    t = time.perf_counter()
    con.execute(periods_sql(p))
    con.execute(
        """CREATE OR REPLACE TEMP TABLE anc AS
        WITH RECURSIVE a(team, ancestor) AS (
            SELECT id, id FROM teams
            UNION
            SELECT a.team, t.parent FROM a JOIN teams t ON t.id = a.ancestor
            WHERE t.parent IS NOT NULL)
        SELECT * FROM a"""
    )
    steps["periods+closure"] = time.perf_counter() - t
    for name, sql in measures(p):
        t = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TEMP TABLE m_{name} AS {sql}")
        steps[name] = time.perf_counter() - t
    t = time.perf_counter()
    joins = " ".join(
        f"LEFT JOIN m_{name} {alias} ON {alias}.team = tp.team AND {alias}.j = tp.j"
        for name, alias in ALIASES
    )
    cols = ", ".join(f"coalesce({src}, 0) AS {col}" for col, src in COLUMNS)
    derived = ", ".join(f"{expr} AS {name}" for name, expr in DERIVED)
    kpis = ", ".join(f"{expr} AS k_{kpi}" for kpi, expr in KPIS)
    rows = con.execute(
        f"""WITH m AS (
            SELECT tp.team, tp.id, {cols}
            FROM (SELECT t.id AS team, p.j, p.id FROM teams t CROSS JOIN periods p) tp {joins}),
        k AS (SELECT *, {derived} FROM m)
        SELECT team, id, {kpis} FROM k"""
    ).fetchall()
    steps["kpis"] = time.perf_counter() - t
    values = {}
    for row in rows:
        team, period = row[0], row[1]
        for (kpi, _), v in zip(KPIS, row[2:]):
            if v is not None:
                v = float(v)
                if v != v or v in (float("inf"), float("-inf")):
                    v = None
            values.setdefault(kpi, {}).setdefault(team, {})[period] = v
    return values, steps


def compute(db, params_json, threads, runs, out_json):
    p = json.loads(open(params_json).read())
    con = duckdb.connect(db, read_only=True)
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    times = []
    steps = None
    values = None
    for _ in range(int(runs)):
        t = time.perf_counter()
        values, s = compute_once(con, p)
        times.append(time.perf_counter() - t)
        steps = steps or s
    con.close()
    with open(out_json, "w") as f:
        json.dump(values, f)
    return {"runs": times, "first_run_steps": steps}


def main():
    cmd = sys.argv[1]
    if cmd == "load":
        out = load(*sys.argv[2:6])
    elif cmd == "compute":
        out = compute(*sys.argv[2:7])
    else:
        sys.exit(f"duck.py: unknown command {cmd!r}")
    out["duckdb"] = duckdb.__version__
    out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))


if __name__ == "__main__":
    main()
