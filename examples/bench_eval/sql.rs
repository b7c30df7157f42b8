//! The hand-written SQL baseline: every KPI of the three standard scorecards, written straight
//! from the definitions of SPEC section 6, with nothing from the engine but the calendar.
//!
//! Periods become slots. The evaluated periods and the one before the first (revenue growth
//! reads it) are consecutive quarters U[0..n); their n + 1 boundaries b[0..=n], bound as
//! ?1..=?n+1, cut time into slots: slot 0 is before b[0], slot k (1..=n) is U[k-1], slot n+1 is
//! at or after b[n], and a NULL time gets slot n+2, after everything, so it is never "before"
//! anything. Then "t in U[i]" is `slot = i + 1`, "t < U[i].end" is `slot <= i + 1` and
//! "t < U[i].start" is `slot <= i`. Times are INTEGER milliseconds (UTC) in the database.
//!
//! Each measure is one grouped query (`GROUP BY team, slot…`) whose small result is rolled up
//! the team tree in Rust: a record counts for its team and every ancestor, so sums and counts
//! add, and means travel as a sum and a count. What does not add up is done per subtree: the
//! stage conversions and repeat purchases select their rows in SQL and unite the distinct deals
//! and customers of each team up the tree in Rust; campaign ROI joins through a closure table of
//! team → ancestor in SQL. The derived KPIs (ratios, growth, velocity…) are plain arithmetic,
//! and anything that is not a finite number (x/0, 0/0, a mean over no rows) is no data.
//!
//! `revenue_growth` compares like for like in an open period (SPEC 16): revenue of [P.start,
//! as-of) against the previous period's revenue over the same span from its start. One more
//! grouped query per open period gives both sums.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use kpi_engine::period::{Calendar, PeriodId};
use rusqlite::{Connection, Row, params_from_iter};
use rustc_hash::FxHashMap as HashMap;

/// The KPIs this baseline computes: the whole standard library, which the scorecards use.
pub const KPIS: [&str; 35] = [
    "revenue",
    "deals_won",
    "win_rate",
    "avg_deal_size",
    "sales_cycle_days",
    "revenue_growth",
    "pipeline_deals",
    "sales_velocity",
    "forecast_accuracy",
    "lead_to_won",
    "demo_to_quote",
    "new_customers",
    "active_customers",
    "retention_rate",
    "churn_rate",
    "churn_vs_acquired",
    "new_customer_rate",
    "repeat_purchase_rate",
    "clv",
    "cac",
    "service_cost_per_customer",
    "renewal_rate",
    "interactions",
    "interactions_per_customer",
    "nps",
    "ces",
    "csat",
    "first_response_hours",
    "resolution_rate",
    "resolution_hours",
    "service_rating",
    "marketing_roi",
    "budget_execution",
    "campaign_lead_rate",
    "traffic_to_lead",
];

const DAY_MS: f64 = 86_400_000.0;
const HOUR_MS: f64 = 3_600_000.0;

/// Opens the database as the engine does (`db::open`); `tuned` adds what one sets for big
/// GROUP BYs: sorts and temporary b-trees in memory, and a 256 MiB page cache.
pub fn open(path: &std::path::Path, tuned: bool) -> Result<Connection, Box<dyn std::error::Error>> {
    let conn = kpi_engine::store::db::open(path)?;
    if tuned {
        conn.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -262144;")?;
    }
    Ok(conn)
}

/// Computes every KPI of [`KPIS`] for every team and each of `evaluated` (consecutive periods
/// of one grain) as of `as_of` (UTC ms; it only decides which periods are open). `hints`:
/// write `NOT INDEXED` after the scanned tables (see [`Runner::not_indexed`]).
pub fn run(
    conn: &Connection,
    cal: &Calendar,
    evaluated: &[PeriodId],
    as_of: i64,
    hints: bool,
) -> Result<Values, Error> {
    let first = *evaluated
        .first()
        .ok_or_else(|| Error::Periods("no period".into()))?;
    let universe: Vec<PeriodId> = std::iter::once(first.prev())
        .chain(evaluated.iter().copied())
        .collect();
    if universe.windows(2).any(|w| w[1] != w[0].next()) {
        return Err(Error::Periods(
            "the evaluated periods must be consecutive".into(),
        ));
    }
    // Slot sets are u64 bit sets.
    if universe.len() + 3 > 64 {
        return Err(Error::Periods("at most 60 periods".into()));
    }
    let mut bounds: Vec<i64> = universe.iter().map(|p| cal.period(*p).start).collect();
    bounds.push(cal.period(*universe.last().expect("not empty")).end);
    let runner = Runner {
        conn,
        tree: Tree::read(conn)?,
        universe: &universe,
        bounds: &bounds,
        hints,
        timings: RefCell::new(Vec::new()),
    };
    let mut measures = Measures::query(&runner)?;
    measures.like_for_like = evaluated
        .iter()
        .map(|p| {
            let (cur, prev) = (cal.period(*p), cal.period(p.prev()));
            if as_of >= cur.end {
                return Ok(None);
            }
            let span = (as_of - cur.start).max(0);
            let ranges = [
                cur.start,
                cur.start + span,
                prev.start,
                (prev.start + span).min(prev.end),
            ];
            runner.like_for_like(&ranges).map(Some)
        })
        .collect::<rusqlite::Result<_>>()?;
    let mut values = measures.kpis(&runner.tree, evaluated);
    values.timings = runner.timings.into_inner();
    Ok(values)
}

/// KPI values by (KPI, team, evaluated period); `None` is "no data".
pub struct Values {
    pub teams: Vec<String>,
    pub periods: Vec<PeriodId>,
    /// KPI → values indexed by `team * periods.len() + period`.
    by_kpi: HashMap<&'static str, Vec<Option<f64>>>,
    /// Wall time of each measure (its query and roll-up), in the order run.
    pub timings: Vec<(&'static str, Duration)>,
}

impl Values {
    /// The value, or `Err` when the baseline has no such KPI, team or period.
    pub fn get(&self, kpi: &str, team: &str, period: PeriodId) -> Result<Option<f64>, String> {
        let t = self
            .teams
            .iter()
            .position(|x| x == team)
            .ok_or_else(|| format!("SQL baseline has no team '{team}'"))?;
        let p = self
            .periods
            .iter()
            .position(|x| *x == period)
            .ok_or_else(|| format!("SQL baseline has no period {period}"))?;
        let v = self
            .by_kpi
            .get(kpi)
            .ok_or_else(|| format!("SQL baseline does not compute '{kpi}'"))?;
        Ok(v[t * self.periods.len() + p])
    }
}

#[derive(Debug)]
pub enum Error {
    Sql(rusqlite::Error),
    Periods(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sql(e) => write!(f, "SQL baseline: {e}"),
            Error::Periods(e) => write!(f, "SQL baseline: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sql(e)
    }
}

/// The raw measures, per team (subtree totals) and slot, before the KPIs are derived.
struct Measures {
    /// Number of slots (n + 3).
    slots: usize,
    /// Won and lost deals closed before b[n], by (close slot, won?):
    /// [count, Σ amount, Σ(closed_at − created_at) ms].
    closed: Grid,
    /// Every deal created before b[n], by (created slot, closed slot): [count].
    pipeline: Grid,
    /// By universe period: [Σ forecasts.amount].
    forecasts: Grid,
    /// By slot: [deals with a `from` event in it, of them with a `to` event before its end].
    lead_to_won: Grid,
    demo_to_quote: Grid,
    /// By (created slot, churned slot): [count].
    customers: Grid,
    /// By slot: [customers with ≥ 1 won deal closed before its end, of them with ≥ 2].
    repeat: Grid,
    /// By (service?, slot): [Σ amount] over marketing + sales, and service.
    expenses: Grid,
    /// By ends_at slot: [count, renewed].
    subscriptions: Grid,
    /// By slot: [count].
    activities: Grid,
    /// By (kind: 0 nps, 1 ces, 2 csat, slot): [count, Σ score, score ≥ 9, score ≤ 6].
    surveys: Grid,
    /// By (opened slot, resolved slot): [count, with a first response,
    /// Σ(first_response_at − opened_at) ms].
    opened: Grid,
    /// By resolved slot: [count, Σ(resolved_at − opened_at) ms, rated, Σ rating].
    resolved: Grid,
    /// By ended_at slot: [Σ cost, Σ budget, Σ leads, Σ participants].
    campaigns: Grid,
    /// By campaign end slot: [Σ amount of the won deals of those campaigns closed before the
    /// end of that period].
    roi_returns: Grid,
    /// By day slot: [Σ leads, Σ visits].
    traffic: Grid,
    /// Per evaluated period, when it is open: [won revenue to as-of, won revenue of the
    /// previous period over the same span] (one cell).
    like_for_like: Vec<Option<Grid>>,
}

impl Measures {
    /// One query per measure. Stage and category names are fixed words of the schema, written
    /// into the query text; every time bound is a bound parameter.
    fn query(r: &Runner<'_>) -> rusqlite::Result<Measures> {
        let n = r.universe.len();
        let slots = n + 3;
        let ni = r.not_indexed();
        let s = |col: &str| slot_sql(col, n);
        let last = n + 1; // the parameter number of b[n]
        let closed = r.grouped(
            "closed",
            &format!(
                "SELECT team, {slot}, stage = 'won', \
                 COUNT(*), SUM(amount), SUM(closed_at - created_at) \
                 FROM deals{ni} WHERE stage IN ('won', 'lost') AND closed_at < ?{last} \
                 GROUP BY 1, 2, 3",
                slot = s("closed_at")
            ),
            &[slots, 2],
            3,
        )?;
        let pipeline = r.grouped(
            "pipeline",
            &format!(
                "SELECT team, {created}, {closed}, COUNT(*) \
                 FROM deals{ni} WHERE created_at < ?{last} GROUP BY 1, 2, 3",
                created = s("created_at"),
                closed = s("closed_at")
            ),
            &[slots, slots],
            1,
        )?;
        let forecasts = r.forecasts()?;
        let lead_to_won = r.conversion("lead_to_won", "lead", "won")?;
        let demo_to_quote = r.conversion("demo_to_quote", "demo", "quote")?;
        let customers = r.grouped(
            "customers",
            &format!(
                "SELECT team, {created}, {churned}, COUNT(*) FROM customers{ni} \
                 GROUP BY 1, 2, 3",
                created = s("created_at"),
                churned = s("churned_at")
            ),
            &[slots, slots],
            1,
        )?;
        let repeat = r.repeat_purchase()?;
        let expenses = r.grouped(
            "expenses",
            &format!(
                "SELECT team, category = 'service', {slot}, SUM(amount) FROM expenses{ni} \
                 WHERE category IN ('marketing', 'sales', 'service') \
                 AND spent_at >= ?1 AND spent_at < ?{last} GROUP BY 1, 2, 3",
                slot = s("spent_at")
            ),
            &[2, slots],
            1,
        )?;
        let subscriptions = r.grouped(
            "subscriptions",
            &format!(
                "SELECT team, {slot}, COUNT(*), SUM(renewed = 1) FROM subscriptions{ni} \
                 WHERE ends_at >= ?1 AND ends_at < ?{last} GROUP BY 1, 2",
                slot = s("ends_at")
            ),
            &[slots],
            2,
        )?;
        let activities = r.grouped(
            "activities",
            &format!(
                "SELECT team, {slot}, COUNT(*) FROM activities{ni} \
                 WHERE occurred_at >= ?1 AND occurred_at < ?{last} GROUP BY 1, 2",
                slot = s("occurred_at")
            ),
            &[slots],
            1,
        )?;
        let surveys = r.grouped(
            "surveys",
            &format!(
                "SELECT team, CASE kind WHEN 'nps' THEN 0 WHEN 'ces' THEN 1 ELSE 2 END, {slot}, \
                 COUNT(*), SUM(score), SUM(score >= 9), SUM(score <= 6) FROM surveys{ni} \
                 WHERE kind IN ('nps', 'ces', 'csat') \
                 AND answered_at >= ?1 AND answered_at < ?{last} GROUP BY 1, 2, 3",
                slot = s("answered_at")
            ),
            &[3, slots],
            4,
        )?;
        let opened = r.grouped(
            "tickets_opened",
            &format!(
                "SELECT team, {opened}, {resolved}, \
                 COUNT(*), COUNT(first_response_at), SUM(first_response_at - opened_at) \
                 FROM tickets{ni} WHERE opened_at >= ?1 AND opened_at < ?{last} \
                 GROUP BY 1, 2, 3",
                opened = s("opened_at"),
                resolved = s("resolved_at")
            ),
            &[slots, slots],
            3,
        )?;
        let resolved = r.grouped(
            "tickets_resolved",
            &format!(
                "SELECT team, {slot}, \
                 COUNT(*), SUM(resolved_at - opened_at), COUNT(rating), SUM(rating) \
                 FROM tickets{ni} WHERE resolved_at >= ?1 AND resolved_at < ?{last} \
                 GROUP BY 1, 2",
                slot = s("resolved_at")
            ),
            &[slots],
            4,
        )?;
        let campaigns = r.grouped(
            "campaigns",
            &format!(
                "SELECT team, {slot}, SUM(cost), SUM(budget), SUM(leads), SUM(participants) \
                 FROM campaigns{ni} WHERE ended_at >= ?1 AND ended_at < ?{last} GROUP BY 1, 2",
                slot = s("ended_at")
            ),
            &[slots],
            4,
        )?;
        // A deal belongs to at most one campaign (campaign ids are keys). Returns are summed
        // per (deal team, campaign team, campaign end slot) first, then counted for every
        // ancestor whose subtree holds both teams. CROSS JOIN keeps deals the outer loop
        // (campaigns are found by key) rather than a walk of the deals per campaign.
        let roi_returns = r.per_ancestor(
            "roi_returns",
            &format!(
                "WITH RECURSIVE {ANCESTORS}, \
                 returns AS ( \
                   SELECT d.team AS deal_team, c.team AS campaign_team, {ended} AS slot, \
                          SUM(d.amount) AS amount \
                   FROM deals d{ni} CROSS JOIN campaigns c ON c.id = d.campaign \
                   WHERE d.stage = 'won' AND c.ended_at >= ?1 AND c.ended_at < ?{last} \
                     AND {closed} <= {ended} \
                   GROUP BY 1, 2, 3) \
                 SELECT ad.ancestor, r.slot, SUM(r.amount) FROM returns r \
                 JOIN anc ad ON ad.team = r.deal_team \
                 JOIN anc ac ON ac.team = r.campaign_team AND ac.ancestor = ad.ancestor \
                 GROUP BY 1, 2",
                ended = s("c.ended_at"),
                closed = s("d.closed_at")
            ),
            &[slots],
            1,
        )?;
        let traffic = r.grouped(
            "web_traffic",
            &format!(
                "SELECT team, {slot}, SUM(leads), SUM(visits) FROM web_traffic{ni} \
                 WHERE day >= ?1 AND day < ?{last} GROUP BY 1, 2",
                slot = s("day")
            ),
            &[slots],
            2,
        )?;
        Ok(Measures {
            slots,
            closed,
            pipeline,
            forecasts,
            lead_to_won,
            demo_to_quote,
            customers,
            repeat,
            expenses,
            subscriptions,
            activities,
            surveys,
            opened,
            resolved,
            campaigns,
            roi_returns,
            traffic,
            like_for_like: Vec::new(),
        })
    }

    /// The KPIs of SPEC 6 for every team and evaluated period U[1..n).
    fn kpis(&self, tree: &Tree, evaluated: &[PeriodId]) -> Values {
        let teams = tree.ids.len();
        let np = evaluated.len();
        let slots = self.slots;
        let mut by_kpi: HashMap<&'static str, Vec<Option<f64>>> =
            KPIS.iter().map(|k| (*k, vec![None; teams * np])).collect();
        for t in 0..teams {
            for e in 0..np {
                // The evaluated period is U[e + 1]: slot k.
                let k = e + 2;

                let won = |slot: usize, f: usize| self.closed.at(t, slot * 2 + 1, f);
                let revenue = won(k, 1);
                // Like for like in an open period (SPEC 16); whole periods once closed.
                let (revenue_to_date, prev_revenue) =
                    match self.like_for_like.get(e).and_then(Option::as_ref) {
                        Some(g) => (g.at(t, 0, 0), g.at(t, 0, 1)),
                        None => (revenue, won(k - 1, 1)),
                    };
                let deals_won = won(k, 0);
                let lost = self.closed.at(t, k * 2, 0);
                let win_rate = ratio(deals_won, deals_won + lost);
                let avg_deal_size = ratio(revenue, deals_won);
                let sales_cycle_days = finite(won(k, 2) / deals_won / DAY_MS);
                let won_to_date: f64 = (0..=k).map(|s| won(s, 1)).sum();
                // Open at some moment of P: created before its end and not closed before its
                // start (an open deal has the NULL slot, after every period).
                let mut pipeline = 0.0;
                for cs in 0..=k {
                    for ks in k..slots {
                        pipeline += self.pipeline.at(t, cs * slots + ks, 0);
                    }
                }
                let sales_velocity =
                    (|| finite(pipeline * avg_deal_size? * win_rate? / sales_cycle_days?))();
                let forecast = self.forecasts.at(t, e + 1, 0);
                let conversion = |g: &Grid| ratio(g.at(t, k, 1), g.at(t, k, 0));

                let (mut new, mut active, mut to_date) = (0.0, 0.0, 0.0);
                let (mut base, mut retained, mut churned_of_base, mut churned) =
                    (0.0, 0.0, 0.0, 0.0);
                for cs in 0..slots {
                    for ks in 0..slots {
                        let x = self.customers.at(t, cs * slots + ks, 0);
                        if cs == k {
                            new += x;
                        }
                        if cs <= k {
                            to_date += x;
                            if ks > k {
                                active += x; // churned_at NULL or ≥ P.end
                            }
                        }
                        // S: created before P.start, churned_at NULL or ≥ P.start.
                        if cs < k && ks >= k {
                            base += x;
                            if ks > k {
                                retained += x;
                            }
                            if ks == k {
                                churned_of_base += x;
                            }
                        }
                        if ks == k {
                            churned += x;
                        }
                    }
                }
                let marketing_sales = self.expenses.at(t, k, 0);
                let service_spend = self.expenses.at(t, slots + k, 0);
                let interactions = self.activities.at(t, k, 0);
                let survey = |kind: usize, f: usize| self.surveys.at(t, kind * slots + k, f);
                let (mut opened, mut answered, mut response_ms, mut resolved_by_end) =
                    (0.0, 0.0, 0.0, 0.0);
                for rs in 0..slots {
                    let cell = k * slots + rs;
                    opened += self.opened.at(t, cell, 0);
                    answered += self.opened.at(t, cell, 1);
                    response_ms += self.opened.at(t, cell, 2);
                    if rs <= k {
                        resolved_by_end += self.opened.at(t, cell, 0);
                    }
                }
                let resolved = |f: usize| self.resolved.at(t, k, f);
                let campaign = |f: usize| self.campaigns.at(t, k, f);
                let cost = campaign(0);
                let returns = self.roi_returns.at(t, k, 0);

                let values: [(&str, Option<f64>); 35] = [
                    ("revenue", Some(revenue)),
                    ("deals_won", Some(deals_won)),
                    ("win_rate", win_rate),
                    ("avg_deal_size", avg_deal_size),
                    ("sales_cycle_days", sales_cycle_days),
                    (
                        "revenue_growth",
                        ratio(revenue_to_date - prev_revenue, prev_revenue),
                    ),
                    ("pipeline_deals", Some(pipeline)),
                    ("sales_velocity", sales_velocity),
                    (
                        "forecast_accuracy",
                        finite(1.0 - (revenue - forecast).abs() / forecast),
                    ),
                    ("lead_to_won", conversion(&self.lead_to_won)),
                    ("demo_to_quote", conversion(&self.demo_to_quote)),
                    ("new_customers", Some(new)),
                    ("active_customers", Some(active)),
                    ("retention_rate", ratio(retained, base)),
                    ("churn_rate", ratio(churned_of_base, base)),
                    ("churn_vs_acquired", ratio(churned, new)),
                    ("new_customer_rate", ratio(new, active)),
                    (
                        "repeat_purchase_rate",
                        ratio(self.repeat.at(t, k, 1), self.repeat.at(t, k, 0)),
                    ),
                    ("clv", ratio(won_to_date, to_date)),
                    ("cac", ratio(marketing_sales, new)),
                    ("service_cost_per_customer", ratio(service_spend, active)),
                    (
                        "renewal_rate",
                        ratio(
                            self.subscriptions.at(t, k, 1),
                            self.subscriptions.at(t, k, 0),
                        ),
                    ),
                    ("interactions", Some(interactions)),
                    ("interactions_per_customer", ratio(interactions, active)),
                    (
                        "nps",
                        ratio(100.0 * (survey(0, 2) - survey(0, 3)), survey(0, 0)),
                    ),
                    ("ces", ratio(survey(1, 1), survey(1, 0))),
                    ("csat", ratio(survey(2, 1), survey(2, 0))),
                    (
                        "first_response_hours",
                        finite(response_ms / answered / HOUR_MS),
                    ),
                    ("resolution_rate", ratio(resolved_by_end, opened)),
                    (
                        "resolution_hours",
                        finite(resolved(1) / resolved(0) / HOUR_MS),
                    ),
                    ("service_rating", ratio(resolved(3), resolved(2))),
                    ("marketing_roi", ratio(returns - cost, cost)),
                    ("budget_execution", ratio(cost, campaign(1))),
                    ("campaign_lead_rate", ratio(campaign(2), campaign(3))),
                    (
                        "traffic_to_lead",
                        ratio(self.traffic.at(t, k, 0), self.traffic.at(t, k, 1)),
                    ),
                ];
                for (kpi, v) in values {
                    by_kpi.get_mut(kpi).expect("listed in KPIS")[t * np + e] = v;
                }
            }
        }
        Values {
            teams: tree.ids.clone(),
            periods: evaluated.to_vec(),
            by_kpi,
            timings: Vec::new(),
        }
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// a ÷ b; a zero denominator (0/0 included) is no data.
fn ratio(a: f64, b: f64) -> Option<f64> {
    finite(a / b)
}

/// The `CASE` giving the slot of a time column (see the module comment).
fn slot_sql(col: &str, n: usize) -> String {
    let mut s = format!("CASE WHEN {col} IS NULL THEN {}", n + 2);
    for k in 0..=n {
        s.push_str(&format!(" WHEN {col} < ?{} THEN {k}", k + 1));
    }
    s.push_str(&format!(" ELSE {} END", n + 1));
    s
}

/// The closure table team → ancestor (itself included), as a recursive CTE.
const ANCESTORS: &str = "anc(team, ancestor) AS ( \
    SELECT id, id FROM teams \
    UNION \
    SELECT anc.team, t.parent FROM anc JOIN teams t ON t.id = anc.ancestor \
    WHERE t.parent IS NOT NULL)";

/// The team tree as read from `teams`: index by id, and each team's chain of itself and its
/// ancestors (a cycle stops the chain).
struct Tree {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    up: Vec<Vec<usize>>,
}

impl Tree {
    fn read(conn: &Connection) -> rusqlite::Result<Tree> {
        let mut stmt = conn.prepare_cached("SELECT id, parent FROM teams ORDER BY id")?;
        let rows: Vec<(String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.0.clone(), i))
            .collect();
        let parent: Vec<Option<usize>> = rows
            .iter()
            .map(|r| r.1.as_ref().and_then(|p| index.get(p).copied()))
            .collect();
        let up = (0..rows.len())
            .map(|t| {
                let mut chain = vec![t];
                let mut cur = t;
                while let Some(p) = parent[cur] {
                    if chain.contains(&p) {
                        break;
                    }
                    chain.push(p);
                    cur = p;
                }
                chain
            })
            .collect();
        Ok(Tree {
            ids: rows.into_iter().map(|r| r.0).collect(),
            index,
            up,
        })
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A dense table of sums: team × cell × field, where a cell is a combination of group keys.
struct Grid {
    cells: usize,
    width: usize,
    data: Vec<f64>,
}

impl Grid {
    fn new(teams: usize, cells: usize, width: usize) -> Grid {
        Grid {
            cells,
            width,
            data: vec![0.0; teams * cells * width],
        }
    }

    fn at(&self, team: usize, cell: usize, field: usize) -> f64 {
        self.data[(team * self.cells + cell) * self.width + field]
    }

    fn add(&mut self, team: usize, cell: usize, field: usize, x: f64) {
        self.data[(team * self.cells + cell) * self.width + field] += x;
    }

    /// Each team's own rows added into itself and every ancestor: subtree totals.
    fn rolled_up(&self, tree: &Tree) -> Grid {
        let mut out = Grid::new(tree.len(), self.cells, self.width);
        let per_team = self.cells * self.width;
        for (t, chain) in tree.up.iter().enumerate() {
            let own = &self.data[t * per_team..(t + 1) * per_team];
            for &a in chain {
                let target = &mut out.data[a * per_team..(a + 1) * per_team];
                for (o, x) in target.iter_mut().zip(own) {
                    *o += x;
                }
            }
        }
        out
    }
}

/// Runs the queries with the boundaries bound as ?1..=?n+1, and times each measure.
struct Runner<'a> {
    conn: &'a Connection,
    tree: Tree,
    universe: &'a [PeriodId],
    bounds: &'a [i64],
    hints: bool,
    timings: RefCell<Vec<(&'static str, Duration)>>,
}

impl Runner<'_> {
    /// The evaluated window covers (nearly) all the data, so a range scan of a time index, or a
    /// walk of the team index to save a sort, fetches almost every row out of order: a plain
    /// table scan is faster. `NOT INDEXED` tells SQLite so.
    fn not_indexed(&self) -> &'static str {
        if self.hints { " NOT INDEXED" } else { "" }
    }

    fn slots(&self) -> usize {
        self.universe.len() + 3
    }

    fn timed<T>(&self, label: &'static str, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let v = f();
        self.timings.borrow_mut().push((label, started.elapsed()));
        v
    }

    /// A query of rows (team id, one integer key per radix, `width` numbers) grouped by team
    /// and keys, rolled up the team tree.
    fn grouped(
        &self,
        label: &'static str,
        sql: &str,
        radices: &[usize],
        width: usize,
    ) -> rusqlite::Result<Grid> {
        self.timed(label, || {
            Ok(self.cells(sql, radices, width)?.rolled_up(&self.tree))
        })
    }

    /// Like `grouped`, for a query whose first column is already the ancestor (its rows are
    /// subtree totals): no roll-up.
    fn per_ancestor(
        &self,
        label: &'static str,
        sql: &str,
        radices: &[usize],
        width: usize,
    ) -> rusqlite::Result<Grid> {
        self.timed(label, || self.cells(sql, radices, width))
    }

    fn cells(&self, sql: &str, radices: &[usize], width: usize) -> rusqlite::Result<Grid> {
        let mut grid = Grid::new(self.tree.len(), radices.iter().product(), width);
        self.each_row(sql, |t, row| {
            let mut cell = 0;
            for (i, r) in radices.iter().enumerate() {
                cell = cell * r + row.get::<_, i64>(1 + i)? as usize;
            }
            for f in 0..width {
                let x: Option<f64> = row.get(1 + radices.len() + f)?;
                grid.add(t, cell, f, x.unwrap_or(0.0));
            }
            Ok(())
        })?;
        Ok(grid)
    }

    /// Runs `sql` with the boundaries bound and calls `f(team, row)` for each row whose first
    /// column is a known team (a record of an unknown team counts for nobody).
    fn each_row<F>(&self, sql: &str, f: F) -> rusqlite::Result<()>
    where
        F: FnMut(usize, &Row<'_>) -> rusqlite::Result<()>,
    {
        self.each_row_with(sql, params_from_iter(self.bounds.iter()), f)
    }

    /// `each_row` with other parameters than the boundaries.
    fn each_row_with<P, F>(&self, sql: &str, params: P, mut f: F) -> rusqlite::Result<()>
    where
        P: rusqlite::Params,
        F: FnMut(usize, &Row<'_>) -> rusqlite::Result<()>,
    {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            let team = row.get_ref(0)?.as_str_or_null()?;
            if let Some(&t) = team.and_then(|id| self.tree.index.get(id)) {
                f(t, row)?;
            }
        }
        Ok(())
    }

    /// Won revenue by team over [r0, r1) and over [r2, r3) (UTC ms), rolled up: one cell.
    fn like_for_like(&self, r: &[i64; 4]) -> rusqlite::Result<Grid> {
        self.timed("like_for_like", || {
            let sql = format!(
                "SELECT team, \
                 SUM(CASE WHEN closed_at >= ?1 AND closed_at < ?2 THEN amount END), \
                 SUM(CASE WHEN closed_at >= ?3 AND closed_at < ?4 THEN amount END) \
                 FROM deals{ni} WHERE stage = 'won' \
                 AND ((closed_at >= ?1 AND closed_at < ?2) OR (closed_at >= ?3 AND closed_at < ?4)) \
                 GROUP BY 1",
                ni = self.not_indexed()
            );
            let mut grid = Grid::new(self.tree.len(), 1, 2);
            self.each_row_with(&sql, params_from_iter(r.iter()), |t, row| {
                for f in 0..2 {
                    let x: Option<f64> = row.get(1 + f)?;
                    grid.add(t, 0, f, x.unwrap_or(0.0));
                }
                Ok(())
            })?;
            Ok(grid.rolled_up(&self.tree))
        })
    }

    /// Forecast sums by team and universe period (a text period id), rolled up.
    fn forecasts(&self) -> rusqlite::Result<Grid> {
        self.timed("forecasts", || {
            let ids: Vec<String> = self.universe.iter().map(|p| p.to_string()).collect();
            let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "SELECT team, period, SUM(amount) FROM forecasts \
                 WHERE period IN ({}) GROUP BY 1, 2",
                marks.join(", ")
            );
            let mut grid = Grid::new(self.tree.len(), ids.len(), 1);
            self.each_row_with(&sql, params_from_iter(ids.iter()), |t, row| {
                let period = row.get_ref(1)?.as_str()?;
                let amount: Option<f64> = row.get(2)?;
                if let Some(p) = ids.iter().position(|x| x == period) {
                    grid.add(t, p, 0, amount.unwrap_or(0.0));
                }
                Ok(())
            })?;
            Ok(grid.rolled_up(&self.tree))
        })
    }

    /// A stage conversion: by slot, [deals with a `from` event in that period, of them with a
    /// `to` event before the period's end, in any order]. Both sides are limited through
    /// stage_events.team and a deal counts once per subtree, so each team's deals are united
    /// up the tree rather than added. One scan reads both kinds of events; the sets are built
    /// here (a DISTINCT or GROUP BY deal in SQL would sort millions of text keys only for the
    /// result to be merged up the tree again).
    fn conversion(&self, label: &'static str, from: &str, to: &str) -> rusqlite::Result<Grid> {
        self.timed(label, || {
            let n = self.universe.len();
            let teams = self.tree.len();
            let mut deals = Interner::default();
            // Per ancestor: deal → bit set of the slots of its `from` events.
            let mut started: Vec<HashMap<u32, u64>> = vec![HashMap::default(); teams];
            // Per ancestor: deal → slot of its first `to` event.
            let mut reached: Vec<HashMap<u32, i64>> = vec![HashMap::default(); teams];
            let sql = format!(
                "SELECT team, stage = '{to}', {slot}, deal FROM stage_events{ni} \
                 WHERE stage IN ('{from}', '{to}') AND entered_at < ?{last}",
                slot = slot_sql("entered_at", n),
                ni = self.not_indexed(),
                last = n + 1
            );
            self.each_row(&sql, |t, row| {
                let is_to: bool = row.get(1)?;
                let slot: i64 = row.get(2)?;
                let deal = deals.id(row.get_ref(3)?.as_str()?);
                for &a in &self.tree.up[t] {
                    if is_to {
                        let first = reached[a].entry(deal).or_insert(slot);
                        *first = (*first).min(slot);
                    } else {
                        *started[a].entry(deal).or_insert(0) |= 1 << slot;
                    }
                }
                Ok(())
            })?;
            let mut grid = Grid::new(teams, self.slots(), 2);
            for (a, set) in started.iter().enumerate() {
                for (deal, bits) in set {
                    let first_to = reached[a].get(deal).copied().unwrap_or(i64::MAX);
                    for k in (0..self.slots()).filter(|k| bits & (1 << k) != 0) {
                        grid.add(a, k, 0, 1.0);
                        // `to` before the end of slot k's period: its slot is at most k.
                        if first_to <= k as i64 {
                            grid.add(a, k, 1, 1.0);
                        }
                    }
                }
            }
            Ok(grid)
        })
    }

    /// Repeat purchases: by slot k, [customers with at least one won deal closed before the end
    /// of slot k, of them with at least two]. Deals are limited through deals.team; one
    /// customer's won deals in several teams of a subtree add up, so the counts per customer
    /// are merged up the tree here (a GROUP BY customer in SQL would sort the rows by text key
    /// only for its counts to be merged again).
    fn repeat_purchase(&self) -> rusqlite::Result<Grid> {
        self.timed("repeat", || {
            let n = self.universe.len();
            let slots = self.slots();
            let teams = self.tree.len();
            let mut customers = Interner::default();
            // Per ancestor: customer → won deals per close slot.
            let mut wins: Vec<HashMap<u32, Vec<u32>>> = vec![HashMap::default(); teams];
            let sql = format!(
                "SELECT team, {slot}, customer FROM deals{ni} \
                 WHERE stage = 'won' AND customer IS NOT NULL AND closed_at < ?{last}",
                slot = slot_sql("closed_at", n),
                ni = self.not_indexed(),
                last = n + 1
            );
            self.each_row(&sql, |t, row| {
                let slot: i64 = row.get(1)?;
                let customer = customers.id(row.get_ref(2)?.as_str()?);
                for &a in &self.tree.up[t] {
                    wins[a].entry(customer).or_insert_with(|| vec![0; slots])[slot as usize] += 1;
                }
                Ok(())
            })?;
            let mut grid = Grid::new(teams, slots, 2);
            for (a, by_customer) in wins.iter().enumerate() {
                for per_slot in by_customer.values() {
                    let mut to_date = 0;
                    for (k, c) in per_slot.iter().enumerate() {
                        to_date += c;
                        if to_date >= 1 {
                            grid.add(a, k, 0, 1.0);
                        }
                        if to_date >= 2 {
                            grid.add(a, k, 1, 1.0);
                        }
                    }
                }
            }
            Ok(grid)
        })
    }
}

/// Small integer ids for text keys (deal and customer ids).
#[derive(Default)]
struct Interner(HashMap<String, u32>);

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.0.get(s) {
            return i;
        }
        let i = self.0.len() as u32;
        self.0.insert(s.to_owned(), i);
        i
    }
}
