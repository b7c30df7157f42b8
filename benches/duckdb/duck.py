"""DuckDB side of the benchmark of issue 17: load the CSVs, compute the 35 library KPIs.

Run by bench.py as a child process (so that its peak RSS is its own):

    python duck.py load DB CSV_DIR SCHEMA_JSON THREADS           -> JSON timings on stdout
    python duck.py compute DB PARAMS_JSON THREADS RUNS OUT_JSON  -> JSON timings on stdout
    python duck.py people DB PARAMS_JSON OUT_JSON                -> the same per salesperson

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
- Per salesperson (`people`, SPEC 14): the same SQL over temp views that shadow the tables,
  with a record's owner as its "team" (stage events through their deal's owner; owners the
  owners table knows only) and the owners as a flat tree, so nothing is rolled up.
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


def rolled_up(table, keys, sums, where=None):
    """CTEs g (one pass over `table`: GROUP BY team and `keys`, the aggregates `sums`) and r
    (the same rolled up the team tree: every ancestor gets the rows of its subtree, summed).
    keys and sums are (name, SQL) pairs."""
    g_cols = ", ".join(f"{sql} AS {name}" for name, sql in keys + sums)
    r_keys = "".join(f", {name}" for name, _ in keys)
    r_sums = ", ".join(f"sum({name}) AS {name}" for name, _ in sums)
    cond = f" WHERE {where}" if where else ""
    return f"""
        WITH g AS (SELECT team, {g_cols} FROM {table}{cond} GROUP BY ALL),
        r AS (SELECT a.ancestor AS team{r_keys}, {r_sums}
              FROM g JOIN anc a USING (team) GROUP BY ALL)"""


def per_period(columns):
    """The final SELECT of a rolled-up measure: (name, FILTERed aggregate) per team and period."""
    cols = ", ".join(f"{sql} AS {name}" for name, sql in columns)
    return f"""
        SELECT r.team, p.j, {cols}
        FROM r CROSS JOIN periods p GROUP BY ALL"""


def measures(p):
    """(name, SQL) of the measure queries; each makes a temp table m_NAME(team, j, ...)."""
    bounds = p["bounds"]
    b = lambda col: bucket(col, bounds)  # noqa: E731
    in_p = lambda k: f"{k} >= lo AND {k} < hi"  # noqa: E731
    q = []
    q.append(
        (
            "deals",
            rolled_up(
                "deals",
                [("cb", b("created_at")), ("kb", b("closed_at")), ("stage", "stage")],
                [
                    ("n", "count(*)"),
                    ("amt", "sum(amount)"),
                    ("dur", "sum(epoch_ms(closed_at) - epoch_ms(created_at))"),
                ],
            )
            + per_period(
                [
                    ("revenue", f"sum(amt) FILTER (stage = 'won' AND {in_p('kb')})"),
                    ("won", f"sum(n) FILTER (stage = 'won' AND {in_p('kb')})"),
                    ("lost", f"sum(n) FILTER (stage = 'lost' AND {in_p('kb')})"),
                    ("won_ms", f"sum(dur) FILTER (stage = 'won' AND {in_p('kb')})"),
                    ("rev_to_date", "sum(amt) FILTER (stage = 'won' AND kb >= clo AND kb < chi)"),
                    ("rev_prev_span", "sum(amt) FILTER (stage = 'won' AND kb >= plo AND kb < phi)"),
                    ("pipeline", "sum(n) FILTER (cb < hi AND kb >= lo)"),
                    ("won_to_date", "sum(amt) FILTER (stage = 'won' AND kb < hi)"),
                ]
            ),
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
            rolled_up(
                "customers",
                [("cb", b("created_at")), ("hb", b("churned_at"))],
                [("n", "count(*)")],
            )
            + per_period(
                [
                    ("new", f"sum(n) FILTER ({in_p('cb')})"),
                    ("active", "sum(n) FILTER (cb < hi AND hb >= hi)"),
                    ("to_date", "sum(n) FILTER (cb < hi)"),
                    ("base", "sum(n) FILTER (cb < lo AND hb >= lo)"),
                    ("retained", "sum(n) FILTER (cb < lo AND hb >= hi)"),
                    ("churned_of_base", f"sum(n) FILTER (cb < lo AND {in_p('hb')})"),
                    ("churned", f"sum(n) FILTER ({in_p('hb')})"),
                ]
            ),
        )
    )
    q.append(
        (
            "expenses",
            rolled_up(
                "expenses",
                [("category", "category"), ("sb", b("spent_at"))],
                [("amt", "sum(amount)")],
            )
            + per_period(
                [
                    (
                        "acquisition",
                        f"sum(amt) FILTER (category IN ('marketing', 'sales') AND {in_p('sb')})",
                    ),
                    ("service", f"sum(amt) FILTER (category = 'service' AND {in_p('sb')})"),
                ]
            ),
        )
    )
    q.append(
        (
            "subscriptions",
            rolled_up(
                "subscriptions",
                [("eb", b("ends_at")), ("renewed", "renewed")],
                [("n", "count(*)")],
            )
            + per_period(
                [
                    ("ending", f"sum(n) FILTER ({in_p('eb')})"),
                    ("renewed", f"sum(n) FILTER ({in_p('eb')} AND renewed)"),
                ]
            ),
        )
    )
    q.append(
        (
            "activities",
            rolled_up("activities", [("ob", b("occurred_at"))], [("n", "count(*)")])
            + per_period([("interactions", f"sum(n) FILTER ({in_p('ob')})")]),
        )
    )
    survey = lambda kind, col: f"sum({col}) FILTER (kind = '{kind}' AND {in_p('ab')})"  # noqa: E731
    q.append(
        (
            "surveys",
            rolled_up(
                "surveys",
                [("kind", "kind"), ("ab", b("answered_at"))],
                [
                    ("n", "count(*)"),
                    ("total", "sum(score)"),
                    ("promoters", "count(*) FILTER (score >= 9)"),
                    ("detractors", "count(*) FILTER (score <= 6)"),
                ],
            )
            + per_period(
                [
                    ("nps_n", survey("nps", "n")),
                    ("nps_pro", survey("nps", "promoters")),
                    ("nps_det", survey("nps", "detractors")),
                    ("ces_n", survey("ces", "n")),
                    ("ces_sum", survey("ces", "total")),
                    ("csat_n", survey("csat", "n")),
                    ("csat_sum", survey("csat", "total")),
                ]
            ),
        )
    )
    # Tickets opened in P and tickets resolved in P, from one scan.
    q.append(
        (
            "tickets",
            rolled_up(
                "tickets",
                [("ob", b("opened_at")), ("rb", b("resolved_at"))],
                [
                    ("n", "count(*)"),
                    ("answered", "count(first_response_at)"),
                    ("response_ms", "sum(epoch_ms(first_response_at) - epoch_ms(opened_at))"),
                    ("resolve_ms", "sum(epoch_ms(resolved_at) - epoch_ms(opened_at))"),
                    ("rated", "count(rating)"),
                    ("rating", "sum(rating)"),
                ],
            )
            + per_period(
                [
                    ("opened", f"sum(n) FILTER ({in_p('ob')})"),
                    ("answered", f"sum(answered) FILTER ({in_p('ob')})"),
                    ("response_ms", f"sum(response_ms) FILTER ({in_p('ob')})"),
                    ("resolved_by_end", f"sum(n) FILTER ({in_p('ob')} AND rb < hi)"),
                    ("resolved", f"sum(n) FILTER ({in_p('rb')})"),
                    ("resolve_ms", f"sum(resolve_ms) FILTER ({in_p('rb')})"),
                    ("rated", f"sum(rated) FILTER ({in_p('rb')})"),
                    ("rating", f"sum(rating) FILTER ({in_p('rb')})"),
                ]
            ),
        )
    )
    q.append(
        (
            "campaigns",
            rolled_up(
                "campaigns",
                [("eb", b("ended_at"))],
                [(c, f"sum({c})") for c in ("cost", "budget", "leads", "participants")],
            )
            + per_period(
                [
                    (c, f"sum({c}) FILTER ({in_p('eb')})")
                    for c in ("cost", "budget", "leads", "participants")
                ]
            ),
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
              GROUP BY ALL)"""
            + per_period([("returns", f"sum(amt) FILTER ({in_p('eb')} AND kb < hi)")]),
        )
    )
    q.append(
        (
            "web_traffic",
            rolled_up(
                "web_traffic",
                [("db", b("day"))],
                [("leads", "sum(leads)"), ("visits", "sum(visits)")],
            )
            + per_period(
                [(c, f"sum({c}) FILTER ({in_p('db')})") for c in ("leads", "visits")]
            ),
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


# The salesperson's KPIs (scorecard sales_reps) and where their records' owner is: the owner
# field, or the owner of the deal an event belongs to.
PEOPLE_VIEWS = {
    "deals": "SELECT * REPLACE (owner AS team) FROM {db}.main.deals WHERE owner IN (SELECT id FROM {db}.main.owners)",
    "customers": "SELECT * REPLACE (owner AS team) FROM {db}.main.customers WHERE owner IN (SELECT id FROM {db}.main.owners)",
    "stage_events": "SELECT s.* REPLACE (d.owner AS team) FROM {db}.main.stage_events s "
    "JOIN {db}.main.deals d ON d.id = s.deal WHERE d.owner IN (SELECT id FROM {db}.main.owners)",
    "teams": "SELECT id, name, NULL::VARCHAR AS parent FROM {db}.main.owners",
}


def people(db, params_json, out_json):
    """Every KPI per owner and period over the PEOPLE_VIEWS (only the KPIs of records that have
    an owner mean anything there); written like `compute`'s values, owners for teams."""
    p = json.loads(open(params_json).read())
    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    name = con.execute("SELECT current_database()").fetchone()[0]
    for view, sql in PEOPLE_VIEWS.items():
        con.execute(f"CREATE TEMP VIEW {view} AS " + sql.format(db=f'"{name}"'))
    t = time.perf_counter()
    values, _ = compute_once(con, p)
    wall = time.perf_counter() - t
    con.close()
    with open(out_json, "w") as f:
        json.dump(values, f)
    return {"runs": [wall]}


def main():
    cmd = sys.argv[1]
    if cmd == "load":
        out = load(*sys.argv[2:6])
    elif cmd == "compute":
        out = compute(*sys.argv[2:7])
    elif cmd == "people":
        out = people(*sys.argv[2:5])
    else:
        sys.exit(f"duck.py: unknown command {cmd!r}")
    out["duckdb"] = duckdb.__version__
    out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))


if __name__ == "__main__":
    main()
