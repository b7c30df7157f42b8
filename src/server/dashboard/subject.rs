//! The page of one team (`/teams/{id}`) or one person (`/owners/{id}`): score and projected
//! score, each KPI with value, target, status and a chart of the trend periods, then the
//! team's child teams and its people (or the person's team), every one linked.

use std::fmt::Write as _;

use super::chart::Chart;
use super::html::{esc, human_value, score_text};
use super::matrix::fmt_weight;
use super::page::Page;
use crate::config::Scorecard;
use crate::eval::report::{Report, TeamLine};
use crate::store::{Owners, TeamTree};

/// Whom the page is about.
pub(super) enum Who<'a> {
    Team(&'a str),
    Owner(&'a str),
}

/// One team's or person's page.
pub(super) struct SubjectPage<'a> {
    pub(super) page: Page<'a>,
    pub(super) card: &'a Scorecard,
    /// The trend periods, oldest first; the last is the shown period.
    pub(super) reports: &'a [Report],
    pub(super) who: Who<'a>,
    pub(super) tree: &'a TeamTree,
    pub(super) owners: &'a Owners,
}

impl SubjectPage<'_> {
    fn line<'r>(&self, r: &'r Report) -> Option<&'r TeamLine> {
        r.teams.iter().find(|l| match self.who {
            Who::Team(t) => l.owner.is_none() && l.team == t,
            Who::Owner(o) => l.owner.as_deref() == Some(o),
        })
    }

    /// The subject's name and the team it belongs to (a team's parent, a person's team).
    fn names(&self) -> (String, Option<usize>) {
        match self.who {
            Who::Team(t) => {
                let i = self.tree.index(t).map(|i| i as usize);
                let name = i.map_or(t.to_string(), |i| self.tree.names[i].clone());
                (
                    name,
                    i.and_then(|i| self.tree.parent[i].map(|p| p as usize)),
                )
            }
            Who::Owner(o) => {
                let i = self.owners.index(o).map(|i| i as usize);
                let name = i.map_or(o.to_string(), |i| self.owners.names[i].clone());
                (
                    name,
                    i.and_then(|i| self.owners.team[i].map(|t| t as usize)),
                )
            }
        }
    }

    pub(super) fn render(&self) -> String {
        let t = self.page.t();
        let nav = self.page.nav();
        let current = self.reports.last().expect("one period at least");
        let (name, up) = self.names();
        let line = self.line(current);
        let mut crumbs = String::new();
        if let Some(u) = up {
            let mut chain: Vec<usize> = self.tree.up[u].iter().map(|x| *x as usize).collect();
            chain.reverse();
            for c in chain {
                let _ = write!(
                    crumbs,
                    "<a href=\"{}\">{}</a> › ",
                    esc(&nav.team(&self.tree.ids[c])),
                    esc(&self.tree.names[c])
                );
            }
        }
        let standing = match line {
            Some(l) => {
                let mut s = format!(
                    "<div class=\"card\"><div class=\"label\">{}</div><div class=\"big\">{}</div><div class=\"muted\">{} {} / {}</div></div>",
                    t.score,
                    score_text(l.score),
                    t.rank,
                    l.rank.map_or("–".into(), |r| r.to_string()),
                    current.teams.len()
                );
                if current.open {
                    let _ = write!(
                        s,
                        "<div class=\"card\"><div class=\"label\">{}</div><div class=\"big\">{}</div><div class=\"muted\">{}</div></div>",
                        t.projected,
                        score_text(l.projected_score),
                        t.projected_hint
                    );
                }
                format!("<section class=\"cards two\">{s}</section>")
            }
            None => format!(
                "<section class=\"panel\"><p class=\"empty\">{}</p></section>",
                esc(t.not_scored)
            ),
        };
        let body = format!(
            "<section class=\"heading\"><p class=\"crumbs\">{crumbs}</p><h1>{name}</h1>\
             <p class=\"sub\">{card} · {period} {state}</p></section>{standing}{kpis}{charts}{related}",
            name = esc(&name),
            card = esc(self.card.label(self.page.lang.code())),
            period = current.period,
            state = self.page.period_state(current),
            kpis = line.map_or(String::new(), |l| self.kpi_table(l, current.open)),
            charts = line.map_or(String::new(), |l| self.charts(l)),
            related = self.related(),
        );
        self.page.render(&name, &body)
    }

    /// Each KPI with its weight, value, target, status, projection and score.
    fn kpi_table(&self, line: &TeamLine, open: bool) -> String {
        let t = self.page.t();
        let cfg = self.page.cfg();
        let nav = self.page.nav();
        let currency = &cfg.settings.currency;
        let mut rows = String::new();
        for k in &line.kpis {
            let Some(def) = cfg.kpi(&k.kpi).map(|x| &x.def) else {
                continue;
            };
            let fmt =
                |v: Option<f64>| v.map_or("–".into(), |v| human_value(v, def.unit, currency));
            let projected = if open {
                format!(
                    "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    fmt(k.forecast),
                    score_text(k.projected_score)
                )
            } else {
                String::new()
            };
            let _ = write!(
                rows,
                "<tr><th class=\"kpi\"><a href=\"{href}\">{label}</a></th><td class=\"num\">{w}</td>\
                 <td class=\"num cell {cls}\"><a href=\"{href}\">{v}</a></td><td class=\"num\">{tg}</td>\
                 <td><span class=\"chip {cls}\">{status}</span></td><td class=\"num\">{score}</td>{projected}</tr>",
                href = esc(&nav.value(&k.kpi, &line.team, line.owner.as_deref())),
                label = esc(def.label(self.page.lang.code())),
                w = k.weight.map_or(String::new(), fmt_weight),
                cls = k.status.name(),
                v = esc(&fmt(k.value)),
                tg = esc(&fmt(k.target)),
                status = t.status(k.status),
                score = score_text(k.score),
            );
        }
        let projected = if open {
            format!(
                "<th class=\"num\">{}</th><th class=\"num\">{} {}</th>",
                t.projected, t.projected, t.score
            )
        } else {
            String::new()
        };
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{kpis}</h2></div><div class=\"scroll\"><table class=\"lines\">\
             <thead><tr><th class=\"kpi\">{kpi}</th><th class=\"num\">{w}</th><th class=\"num\">{v}</th><th class=\"num\">{tg}</th>\
             <th>{st}</th><th class=\"num\">{sc}</th>{projected}</tr></thead><tbody>{rows}</tbody></table></div></section>",
            kpis = t.kpis_title,
            kpi = t.kpi,
            w = t.weight,
            v = t.value,
            tg = t.target_col,
            st = t.state,
            sc = t.score,
        )
    }

    /// A chart of each KPI over the trend periods, with its target line.
    fn charts(&self, line: &TeamLine) -> String {
        let t = self.page.t();
        let cfg = self.page.cfg();
        let currency = &cfg.settings.currency;
        let labels: Vec<String> = self.reports.iter().map(|r| r.period.to_string()).collect();
        let mut out = String::new();
        for k in &line.kpis {
            let Some(def) = cfg.kpi(&k.kpi).map(|x| &x.def) else {
                continue;
            };
            let at = |r: &Report| {
                self.line(r)
                    .and_then(|l| l.kpis.iter().find(|x| x.kpi == k.kpi))
                    .map(|x| (x.value, x.target))
            };
            let points: Vec<(Option<f64>, Option<f64>)> = self
                .reports
                .iter()
                .map(|r| at(r).unwrap_or((None, None)))
                .collect();
            let format = |v: f64| human_value(v, def.unit, currency);
            let label = def.label(self.page.lang.code());
            let chart = Chart {
                labels: labels.clone(),
                values: points.iter().map(|p| p.0).collect(),
                targets: points.iter().map(|p| p.1).collect(),
                format: &format,
                title: label.to_string(),
                target_word: t.target,
            };
            let _ = write!(
                out,
                "<figure class=\"chartbox\"><figcaption>{}</figcaption>{}</figure>",
                esc(label),
                chart.svg()
            );
        }
        format!(
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{}</h2></div><div class=\"charts\">{out}</div></section>",
            t.trend
        )
    }

    /// A team's child teams and people; a person's team.
    fn related(&self) -> String {
        let t = self.page.t();
        let nav = self.page.nav();
        let current = self.reports.last().expect("one period at least");
        let score_of = |team: &str, owner: Option<&str>| {
            current
                .teams
                .iter()
                .find(|l| l.team == team && l.owner.as_deref() == owner)
                .map(|l| score_text(l.score))
        };
        let item = |href: String, name: &str, score: Option<String>| {
            format!(
                "<li><a href=\"{}\">{}</a>{}</li>",
                esc(&href),
                esc(name),
                score.map_or(String::new(), |s| format!(
                    " <span class=\"muted\">{s}</span>"
                ))
            )
        };
        let Who::Team(id) = self.who else {
            return String::new();
        };
        let Some(ti) = self.tree.index(id) else {
            return String::new();
        };
        let children: String = self
            .tree
            .tree_order()
            .into_iter()
            .filter(|c| self.tree.parent[*c as usize] == Some(ti))
            .map(|c| {
                let cid = &self.tree.ids[c as usize];
                item(
                    nav.team(cid),
                    &self.tree.names[c as usize],
                    score_of(cid, None),
                )
            })
            .collect();
        let people: String = (0..self.owners.len())
            .filter(|o| self.owners.team[*o] == Some(ti))
            .map(|o| item(nav.owner(&self.owners.ids[o]), &self.owners.names[o], None))
            .collect();
        let list = |title: &str, items: String| {
            if items.is_empty() {
                String::new()
            } else {
                format!(
                    "<section class=\"panel\"><div class=\"panel-head\"><h2>{title}</h2></div><ul class=\"links\">{items}</ul></section>"
                )
            }
        };
        format!(
            "<div class=\"related\">{}{}</div>",
            list(t.child_teams, children),
            list(t.people_title, people)
        )
    }
}
