//! The process's Prometheus metrics (SPEC 21): the counters and histograms
//! the engine, the deliverer and the server add to as things happen, in one
//! registry that `GET /metrics` renders in the text exposition format.
//!
//! Gauges of state that lives elsewhere (the served config version, records,
//! alerts, the outbox) are set by the scrape itself from their sources, so
//! they are never stale; see `server::metrics`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub config_version: IntGauge,
    pub reload_successful: IntGauge,
    pub reload_success_timestamp: Gauge,
    pub records: GaugeVec,
    pub evaluation_seconds: Histogram,
    pub alerts: GaugeVec,
    pub notifications: IntCounterVec,
    pub outbox_pending: GaugeVec,
    pub http_requests: IntCounterVec,
    pub http_request_seconds: Histogram,
    /// 1 while this process runs the alert scheduler (always on SQLite; on
    /// PostgreSQL while it holds the scheduler's lease).
    pub scheduler_leader: IntGauge,
}

/// How a delivery attempt ended, the `result` label of `kpi_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// It failed and will be tried again.
    Retried,
    /// It failed for the last time.
    Failed,
}

impl Delivery {
    fn label(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Retried => "retried",
            Delivery::Failed => "failed",
        }
    }
}

/// Seconds buckets from 1 ms to 60 s.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let seconds = |name: &str, help: &str| {
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(SECONDS.to_vec()))
    };
    let m = Metrics {
        config_version: IntGauge::new("kpi_config_version", "The configuration version served")?,
        reload_successful: IntGauge::new(
            "kpi_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or failed (0)",
        )?,
        reload_success_timestamp: Gauge::new(
            "kpi_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (Unix seconds)",
        )?,
        records: GaugeVec::new(
            Opts::new("kpi_records", "Records held, per entity"),
            &["entity"],
        )?,
        evaluation_seconds: seconds(
            "kpi_evaluation_seconds",
            "Time to evaluate KPIs and scorecards over periods",
        )?,
        alerts: GaugeVec::new(
            Opts::new("kpi_alerts", "Alerts, per state and kind"),
            &["state", "kind"],
        )?,
        notifications: IntCounterVec::new(
            Opts::new(
                "kpi_notifications_total",
                "Notification delivery attempts, per webhook and result",
            ),
            &["webhook", "result"],
        )?,
        outbox_pending: GaugeVec::new(
            Opts::new(
                "kpi_outbox_pending",
                "Notifications waiting in the outbox, per webhook",
            ),
            &["webhook"],
        )?,
        http_requests: IntCounterVec::new(
            Opts::new(
                "kpi_http_requests_total",
                "HTTP requests answered, per route template and status",
            ),
            &["route", "status"],
        )?,
        http_request_seconds: seconds("kpi_http_request_seconds", "Time to answer a request")?,
        scheduler_leader: IntGauge::new(
            "kpi_alert_scheduler_leader",
            "Whether this process runs the alert scheduler (1) or another one does (0)",
        )?,
        registry,
    };
    let r = &m.registry;
    r.register(Box::new(m.config_version.clone()))?;
    r.register(Box::new(m.reload_successful.clone()))?;
    r.register(Box::new(m.reload_success_timestamp.clone()))?;
    r.register(Box::new(m.records.clone()))?;
    r.register(Box::new(m.evaluation_seconds.clone()))?;
    r.register(Box::new(m.alerts.clone()))?;
    r.register(Box::new(m.notifications.clone()))?;
    r.register(Box::new(m.outbox_pending.clone()))?;
    r.register(Box::new(m.http_requests.clone()))?;
    r.register(Box::new(m.http_request_seconds.clone()))?;
    r.register(Box::new(m.scheduler_leader.clone()))?;
    Ok(m)
}

/// The metrics of this process.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> =
        LazyLock::new(|| build().expect("the metric names and labels are valid"));
    &METRICS
}

impl Metrics {
    /// Counts one delivery attempt of a notification to `webhook`.
    pub fn notification(&self, webhook: &str, result: Delivery) {
        self.notifications
            .with_label_values(&[webhook, result.label()])
            .inc();
    }

    /// Records that the configuration was loaded successfully now.
    pub fn reloaded_ok(&self) {
        self.reload_successful.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.reload_success_timestamp.set(now);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for these metric types.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_spec_21_is_exposed_with_its_labels() {
        let m = build().unwrap();
        m.records.with_label_values(&["deals"]).set(3.0);
        m.alerts.with_label_values(&["firing", "missed"]).set(1.0);
        m.notification("ops", Delivery::Retried);
        m.outbox_pending.with_label_values(&["ops"]).set(1.0);
        m.http_requests
            .with_label_values(&["/api/kpis/{id}", "200"])
            .inc();
        m.http_request_seconds.observe(0.01);
        m.evaluation_seconds.observe(0.2);
        let text = m.render();
        for line in [
            "# TYPE kpi_config_version gauge",
            "# TYPE kpi_config_last_reload_successful gauge",
            "# TYPE kpi_config_last_reload_success_timestamp_seconds gauge",
            "kpi_records{entity=\"deals\"} 3",
            "# TYPE kpi_evaluation_seconds histogram",
            "kpi_alerts{kind=\"missed\",state=\"firing\"} 1",
            "kpi_notifications_total{result=\"retried\",webhook=\"ops\"} 1",
            "kpi_outbox_pending{webhook=\"ops\"} 1",
            "kpi_http_requests_total{route=\"/api/kpis/{id}\",status=\"200\"} 1",
            "# TYPE kpi_http_request_seconds histogram",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
