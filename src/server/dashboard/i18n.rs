//! The dashboard's languages: English and Chinese words of the page itself (KPI and scorecard
//! labels come from the configuration; status names are the command line's, from `render`).

use crate::eval::scoring::Status;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Lang {
    En,
    Zh,
}

impl Lang {
    /// `?lang=`: anything starting with `zh` is Chinese, everything else English.
    pub(super) fn from(s: Option<&str>) -> Lang {
        match s {
            Some(l) if l.starts_with("zh") => Lang::Zh,
            _ => Lang::En,
        }
    }

    /// The language code KPI and scorecard labels are looked up with (`None`: the default).
    pub(super) fn code(self) -> Option<&'static str> {
        match self {
            Lang::En => None,
            Lang::Zh => Some("zh"),
        }
    }

    /// The page's own words in this language.
    pub(super) fn t(self) -> &'static Text {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

impl Text {
    /// The name of a status in this language (the words of the command line's tables).
    pub(super) fn status(&self, s: Status) -> &'static str {
        crate::render::status_word(s, self.code)
    }
}

/// The page's own words in one language.
pub(super) struct Text {
    pub(super) html_lang: &'static str,
    pub(super) app: &'static str,
    pub(super) scorecard: &'static str,
    pub(super) period: &'static str,
    pub(super) show: &'static str,
    pub(super) open: &'static str,
    pub(super) elapsed: &'static str,
    pub(super) closed: &'static str,
    pub(super) as_of: &'static str,
    pub(super) teams: &'static str,
    /// The word for the subjects of an owner scorecard.
    pub(super) people: &'static str,
    pub(super) kpis: &'static str,
    pub(super) top_team: &'static str,
    pub(super) average: &'static str,
    pub(super) missed: &'static str,
    pub(super) at_risk: &'static str,
    pub(super) cells: &'static str,
    pub(super) ranking: &'static str,
    pub(super) rank: &'static str,
    pub(super) team: &'static str,
    pub(super) score: &'static str,
    pub(super) change: &'static str,
    pub(super) trend: &'static str,
    pub(super) by_team: &'static str,
    pub(super) kpi: &'static str,
    pub(super) weight: &'static str,
    pub(super) target: &'static str,
    pub(super) no_score: &'static str,
    pub(super) alerts: &'static str,
    pub(super) no_alerts: &'static str,
    pub(super) errors_title: &'static str,
    pub(super) errors_hint: &'static str,
    pub(super) config: &'static str,
    pub(super) data: &'static str,
    pub(super) no_scorecards: &'static str,
    /// The language code the status words are looked up with.
    code: Option<&'static str>,
}

static EN: Text = Text {
    html_lang: "en",
    app: "KPI Engine",
    scorecard: "Scorecard",
    period: "Period",
    show: "Show",
    open: "open",
    elapsed: "elapsed",
    closed: "closed",
    as_of: "as of",
    teams: "teams",
    people: "people",
    kpis: "KPIs",
    top_team: "Top team",
    average: "Average score",
    missed: "Missed",
    at_risk: "At risk",
    cells: "of {n} KPI values",
    ranking: "Ranking",
    rank: "#",
    team: "Team",
    score: "Score",
    change: "vs prev.",
    trend: "Trend",
    by_team: "KPIs by team",
    kpi: "KPI",
    weight: "Weight",
    target: "target",
    no_score: "no score",
    alerts: "Open alerts",
    no_alerts: "No open alerts.",
    errors_title: "The configuration on disk has errors",
    errors_hint: "Still serving configuration version {v}. Fix the files and save; this banner goes away when they check.",
    config: "config",
    data: "data",
    no_scorecards: "No scorecards are configured (kpis/scorecards.toml).",
    code: None,
};

static ZH: Text = Text {
    html_lang: "zh-CN",
    app: "KPI 引擎",
    scorecard: "考核表",
    period: "期间",
    show: "显示",
    open: "进行中",
    elapsed: "已过",
    closed: "已结束",
    as_of: "截至",
    teams: "个团队",
    people: "名人员",
    kpis: "项指标",
    top_team: "排名第一",
    average: "平均得分",
    missed: "未达成",
    at_risk: "有风险",
    cells: "共 {n} 个指标值",
    ranking: "团队排名",
    rank: "名次",
    team: "团队",
    score: "得分",
    change: "较上期",
    trend: "趋势",
    by_team: "各团队指标",
    kpi: "指标",
    weight: "权重",
    target: "目标",
    no_score: "无得分",
    alerts: "未关闭的告警",
    no_alerts: "暂无告警。",
    errors_title: "磁盘上的配置有错误",
    errors_hint: "仍在使用配置版本 {v}。修正文件并保存后，此提示会自动消失。",
    config: "配置",
    data: "数据",
    no_scorecards: "尚未配置考核表（kpis/scorecards.toml）。",
    code: Some("zh"),
};
