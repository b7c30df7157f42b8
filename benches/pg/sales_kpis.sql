-- Hand-written SQL for five sales KPIs (revenue, deals_won, win_rate, avg_deal_size,
-- sales_cycle_days) of every team (its whole subtree) for one quarter, on the PostgreSQL tables
-- the engine makes: the baseline the pushdown of `kpi eval --kpi …` is timed against
-- (benches/pg_bench.sh). :lo and :hi are the quarter's bounds (psql variables).
WITH RECURSIVE closure(team, ancestor) AS (
    SELECT id, id FROM teams
    UNION ALL
    SELECT c.team, t.parent FROM closure c JOIN teams t ON t.id = c.ancestor WHERE t.parent IS NOT NULL
),
own AS (
    SELECT team,
           count(*) FILTER (WHERE stage = 'won') AS won,
           count(*) FILTER (WHERE stage = 'lost') AS lost,
           coalesce(sum(amount) FILTER (WHERE stage = 'won'), 0) AS revenue,
           sum(extract(epoch FROM closed_at - created_at)) FILTER (WHERE stage = 'won') AS cycle_s
    FROM deals
    WHERE closed_at >= :'lo'::timestamptz AND closed_at < :'hi'::timestamptz
    GROUP BY team
)
SELECT c.ancestor AS team,
       sum(o.revenue) AS revenue,
       sum(o.won) AS deals_won,
       sum(o.won)::float8 / nullif(sum(o.won) + sum(o.lost), 0) AS win_rate,
       sum(o.revenue) / nullif(sum(o.won), 0) AS avg_deal_size,
       sum(o.cycle_s) / 86400.0 / nullif(sum(o.won), 0) AS sales_cycle_days
FROM own o JOIN closure c ON c.team = o.team
GROUP BY c.ancestor
ORDER BY c.ancestor;
