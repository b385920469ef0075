//! Prometheus metrics: what an operations team scrapes from `/metrics`.
//!
//! Names and labels follow the OpenTelemetry semantic conventions as Prometheus spells them
//! (`http.server.request.duration` → `http_server_request_duration_seconds`, attribute dots as
//! underscores), with the OTel default duration buckets. The service's own measures carry the
//! `neurocds_` prefix:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | `http_request_method`, `http_route`, `http_response_status_code` | every answered request; the route is the pattern (`/reports/{id}`), never the path |
//! | `http_client_request_duration_seconds` | `peer` (fhir, dicomweb, jwks), `http_request_method`, `outcome` | outbound requests until the answer's head; outcome is the status code or an error class |
//! | `neurocds_hooks_total` | `cds_service`, `hook`, `outcome`, `card` | hook calls answered, by what they decided and whether a card was shown |
//! | `neurocds_analyses_total` | `outcome`, `reason` | finished analyses; `reason` is a class (the scope gate's reason, or the failed stage), never free text |
//! | `neurocds_analysis_stage_duration_seconds` | `stage` | per-stage durations of finished analyses |
//! | `neurocds_analyses_in_flight`, `neurocds_analyses_capacity` | | analyses running now (every worker), and the queue's bound |
//! | `neurocds_analyses_queued`, `neurocds_analyses_dead` | | analyses waiting for a worker, and dead-lettered |
//! | `neurocds_analysis_queue_oldest_wait_seconds` | | how long the oldest ready analysis has waited for a worker |
//! | `neurocds_worker_analyses_running` | | analyses this process's worker runs now |
//! | `neurocds_inference_queue_depth`, `neurocds_inference_queue_capacity` | | studies waiting for the ensemble, and the bound |
//! | `neurocds_inference_batch_size`, `neurocds_inference_batch_duration_seconds` | `device` | forward passes of the ensemble |
//! | `neurocds_feedback_total` | `outcome` | feedback on cards: `accepted`, `overridden` (the override rate) |
//! | `neurocds_model_info` | `model`, `model_version`, `ensemble_sha256`, `preprocessing`, `device` | 1, with the loaded ensemble's identity |
//! | `neurocds_model_window_analyses` | `model_version` | analyses in the monitoring window (`crate::monitoring`) |
//! | `neurocds_model_drift_psi` | `model_version`, `quantity`, `against` | population stability index of a watched quantity against the validation cohort or the baseline period |
//! | `neurocds_model_drift_alerts` | `model_version` | watched quantities drifting above `monitoring.psi_alert` |
//! | `neurocds_model_outcome_ratio` | `model_version`, `outcome` | share of the window's analyses by outcome (the abstention rate is `abstained`) |
//! | `neurocds_model_override_ratio` | `model_version`, `recommendation` | overridden / cards with feedback in the window |
//!
//! No label ever holds a patient, a study, a user, a URL or a token: label values come from
//! closed sets the code names (routes, outcomes, stages, peers), so a scrape carries no PHI and
//! the number of series stays bounded whatever callers send.
//!
//! Each [`Metrics`] has its own registry (tests build many services in one process).

use std::{sync::Arc, time::Duration};

use prometheus::{Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The OpenTelemetry default buckets for `*.duration` histograms, in seconds.
pub const OTEL_DURATION_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// Analysis stages run longer than requests: the OTel buckets, extended to two minutes.
const STAGE_BUCKETS: [f64; 16] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 120.0];

/// An outbound peer, as the `peer` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Fhir,
    DicomWeb,
    Jwks,
}

impl Peer {
    pub fn as_str(self) -> &'static str {
        match self {
            Peer::Fhir => "fhir",
            Peer::DicomWeb => "dicomweb",
            Peer::Jwks => "jwks",
        }
    }
}

/// The service's metric families and the registry they live in. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Families {
    registry: Registry,
    http_server: HistogramVec,
    http_client: HistogramVec,
    hooks: IntCounterVec,
    analyses: IntCounterVec,
    stages: HistogramVec,
    in_flight: IntGauge,
    capacity: IntGauge,
    queued: IntGauge,
    dead: IntGauge,
    oldest_wait: prometheus::Gauge,
    worker_running: IntGauge,
    queue_depth: IntGauge,
    queue_capacity: IntGauge,
    feedback: IntCounterVec,
    batch_size: HistogramVec,
    batch_duration: HistogramVec,
    queue_wait: HistogramVec,
    audit_batch: Histogram,
    audit_lag: Histogram,
    window_analyses: IntGaugeVec,
    drift_psi: GaugeVec,
    drift_alerts: IntGaugeVec,
    outcome_ratio: GaugeVec,
    override_ratio: GaugeVec,
}

/// What the model info metric says about the loaded ensemble.
pub struct ModelIdentity<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub ensemble_sha256: &'a str,
    pub preprocessing: &'a str,
    pub device: &'a str,
}

/// Values read when a scrape arrives rather than counted as they change.
pub struct Gauges {
    /// The queue (every replica and worker), when the database answered the scrape.
    pub queue: Option<crate::queue::Depth>,
    pub analyses_capacity: usize,
    /// Analyses this process's worker runs now (0 without one).
    pub worker_running: usize,
    pub inference_queue_depth: usize,
    pub inference_queue_capacity: usize,
}

impl Gauges {
    /// Reads them now: the queue (every replica and worker; `None`, logged, when the database
    /// does not answer), this process's worker, and the ensemble's inference queue.
    pub async fn measure(queue: &crate::queue::Queue, worker_running: usize, analyses_capacity: usize, engine: Option<&neurocds_analysis::inference::Engine>) -> Gauges {
        let (inference_queue_depth, inference_queue_capacity) = engine.map_or((0, 0), |e| e.queue());
        let queue = queue.depth().await.map_err(|e| tracing::warn!(error = %e, "metrics: cannot measure the analysis queue")).ok();
        Gauges { queue, analyses_capacity, worker_running, inference_queue_depth, inference_queue_capacity }
    }
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("a valid histogram definition");
    registry.register(Box::new(h.clone())).expect("each metric is registered once");
    h
}

fn plain_histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("a valid histogram definition");
    registry.register(Box::new(h.clone())).expect("each metric is registered once");
    h
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter definition");
    registry.register(Box::new(c.clone())).expect("each metric is registered once");
    c
}

fn gauge_vec<P: prometheus::core::Atomic + 'static>(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::core::GenericGaugeVec<P> {
    let g = prometheus::core::GenericGaugeVec::<P>::new(Opts::new(name, help), labels).expect("a valid gauge definition");
    registry.register(Box::new(g.clone())).expect("each metric is registered once");
    g
}

fn gauge<P: prometheus::core::Atomic + 'static>(registry: &Registry, name: &str, help: &str) -> prometheus::core::GenericGauge<P> {
    let g = prometheus::core::GenericGauge::<P>::new(name, help).expect("a valid gauge definition");
    registry.register(Box::new(g.clone())).expect("each metric is registered once");
    g
}

impl Metrics {
    /// A fresh registry with every family, and the model info set.
    pub fn new(model: &ModelIdentity) -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let model_info = IntGaugeVec::new(
            Opts::new("neurocds_model_info", "The loaded ensemble (always 1)."),
            &["model", "model_version", "ensemble_sha256", "preprocessing", "device"],
        )
        .expect("a valid gauge definition");
        registry.register(Box::new(model_info.clone())).expect("each metric is registered once");
        model_info.with_label_values(&[model.name, model.version, model.ensemble_sha256, model.preprocessing, model.device]).set(1);
        let families = Families {
            http_server: histogram(
                r,
                "http_server_request_duration_seconds",
                "Duration of HTTP server requests.",
                &OTEL_DURATION_BUCKETS,
                &["http_request_method", "http_route", "http_response_status_code"],
            ),
            http_client: histogram(
                r,
                "http_client_request_duration_seconds",
                "Duration of outbound HTTP requests, until the answer's head.",
                &OTEL_DURATION_BUCKETS,
                &["peer", "http_request_method", "outcome"],
            ),
            hooks: counter(r, "neurocds_hooks_total", "CDS Hooks calls answered.", &["cds_service", "hook", "outcome", "card"]),
            analyses: counter(r, "neurocds_analyses_total", "Analyses finished.", &["outcome", "reason"]),
            stages: histogram(r, "neurocds_analysis_stage_duration_seconds", "Duration of the stages of finished analyses.", &STAGE_BUCKETS, &["stage"]),
            in_flight: gauge(r, "neurocds_analyses_in_flight", "Analyses running now."),
            capacity: gauge(r, "neurocds_analyses_capacity", "Analyses that may be queued or running at once (hooks.max_pending_analyses)."),
            queued: gauge(r, "neurocds_analyses_queued", "Analyses waiting for a worker."),
            dead: gauge(r, "neurocds_analyses_dead", "Analyses dead-lettered after failing every attempt."),
            oldest_wait: gauge(r, "neurocds_analysis_queue_oldest_wait_seconds", "How long the oldest ready analysis has waited for a worker."),
            worker_running: gauge(r, "neurocds_worker_analyses_running", "Analyses this process's worker runs now."),
            queue_depth: gauge(r, "neurocds_inference_queue_depth", "Studies waiting for the ensemble."),
            queue_capacity: gauge(r, "neurocds_inference_queue_capacity", "Studies the inference queue holds at most."),
            feedback: counter(r, "neurocds_feedback_total", "Feedback on cards, by outcome (accepted, overridden).", &["outcome"]),
            batch_size: histogram(r, "neurocds_inference_batch_size", "Studies run in one forward pass of the ensemble.", &[1.0, 2.0, 4.0, 8.0, 16.0], &["device"]),
            batch_duration: histogram(
                r,
                "neurocds_inference_batch_duration_seconds",
                "Duration of one forward pass of every member over a batch.",
                &OTEL_DURATION_BUCKETS,
                &["device"],
            ),
            queue_wait: histogram(
                r,
                "neurocds_inference_queue_wait_seconds",
                "How long a study waited in the inference queue before its forward pass began.",
                &OTEL_DURATION_BUCKETS,
                &["device"],
            ),
            audit_batch: plain_histogram(r, "neurocds_audit_write_batch_size", "Decisions committed to the audit trail in one transaction.", &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            audit_lag: plain_histogram(
                r,
                "neurocds_audit_write_lag_seconds",
                "From a batch's oldest decision being queued to its commit (what a hook waits for its audit row).",
                &OTEL_DURATION_BUCKETS,
            ),
            window_analyses: gauge_vec(r, "neurocds_model_window_analyses", "Analyses in the model monitoring window.", &["model_version"]),
            drift_psi: gauge_vec(
                r,
                "neurocds_model_drift_psi",
                "Population stability index of a watched quantity in the monitoring window, against the validation cohort or the baseline period.",
                &["model_version", "quantity", "against"],
            ),
            drift_alerts: gauge_vec(r, "neurocds_model_drift_alerts", "Watched quantities drifting above monitoring.psi_alert.", &["model_version"]),
            outcome_ratio: gauge_vec(r, "neurocds_model_outcome_ratio", "Share of the monitoring window's analyses by outcome.", &["model_version", "outcome"]),
            override_ratio: gauge_vec(r, "neurocds_model_override_ratio", "Overridden cards among cards with feedback in the monitoring window, by recommendation.", &["model_version", "recommendation"]),
            registry,
        };
        Metrics { inner: Arc::new(families) }
    }

    /// One answered HTTP request. `route` is the matched pattern, or `unmatched`.
    pub fn http_server_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.inner.http_server.with_label_values(&[method, route, &status.to_string()]).observe(elapsed.as_secs_f64());
    }

    /// One outbound request to `peer`: `outcome` is the status code, or an error class.
    pub fn http_client_request(&self, peer: Peer, method: &str, outcome: &str, elapsed: Duration) {
        self.inner.http_client.with_label_values(&[peer.as_str(), method, outcome]).observe(elapsed.as_secs_f64());
    }

    /// One answered hook call.
    pub fn hook(&self, service: &str, hook: &str, outcome: &str, card_shown: bool) {
        self.inner.hooks.with_label_values(&[service, hook, outcome, if card_shown { "shown" } else { "none" }]).inc();
    }

    /// One finished analysis and the duration of each of its stages (milliseconds).
    pub fn analysis<'a>(&self, outcome: &str, reason: &str, stage_ms: impl IntoIterator<Item = (&'a String, &'a u64)>) {
        self.inner.analyses.with_label_values(&[outcome, reason]).inc();
        for (stage, ms) in stage_ms {
            self.inner.stages.with_label_values(&[stage]).observe(*ms as f64 / 1000.0);
        }
    }

    /// One forward pass of the ensemble on `device` over `size` studies, and how long each of
    /// them waited for it.
    pub fn inference_batch(&self, device: &str, size: usize, elapsed: Duration, waits: &[Duration]) {
        self.inner.batch_size.with_label_values(&[device]).observe(size as f64);
        self.inner.batch_duration.with_label_values(&[device]).observe(elapsed.as_secs_f64());
        let wait = self.inner.queue_wait.with_label_values(&[device]);
        for w in waits {
            wait.observe(w.as_secs_f64());
        }
    }

    /// One batch of decisions committed to the audit trail.
    pub fn audit_write(&self, decisions: usize, lag: Duration) {
        self.inner.audit_batch.observe(decisions as f64);
        self.inner.audit_lag.observe(lag.as_secs_f64());
    }

    /// One feedback entry: `accepted` or `overridden`.
    pub fn feedback(&self, outcome: &str) {
        self.inner.feedback.with_label_values(&[outcome]).inc();
    }

    /// The model monitoring figures, replacing the last ones (versions leave the window).
    pub fn monitoring(&self, snapshot: &crate::monitoring::Snapshot) {
        let f = &self.inner;
        for g in [&f.drift_psi, &f.outcome_ratio, &f.override_ratio] {
            g.reset();
        }
        f.window_analyses.reset();
        f.drift_alerts.reset();
        for v in &snapshot.versions {
            let version = v.model_version.as_str();
            f.window_analyses.with_label_values(&[version]).set(v.analyses as i64);
            f.drift_alerts.with_label_values(&[version]).set(v.quantities.iter().filter(|q| q.status == "drift").count() as i64);
            for q in &v.quantities {
                if let Some(psi) = q.psi {
                    f.drift_psi.with_label_values(&[version, q.name, q.against.as_str()]).set(psi);
                }
            }
            for (outcome, share) in [("recommended", v.recommended), ("abstained", v.abstained), ("out-of-scope", v.out_of_scope), ("unavailable", v.unavailable)] {
                f.outcome_ratio.with_label_values(&[version, outcome]).set(share);
            }
            for o in &v.overrides {
                if let Some(rate) = o.override_rate {
                    f.override_ratio.with_label_values(&[version, &o.recommendation]).set(rate);
                }
            }
        }
    }

    /// The exposition (text format 0.0.4), with the gauges read now.
    pub fn render(&self, gauges: &Gauges) -> String {
        let f = &self.inner;
        if let Some(q) = &gauges.queue {
            f.in_flight.set(q.running as i64);
            f.queued.set(q.queued as i64);
            f.dead.set(q.dead as i64);
            f.oldest_wait.set(q.oldest_wait_s);
        }
        f.worker_running.set(gauges.worker_running as i64);
        f.capacity.set(gauges.analyses_capacity as i64);
        f.queue_depth.set(gauges.inference_queue_depth as i64);
        f.queue_capacity.set(gauges.inference_queue_capacity as i64);
        let mut out = Vec::new();
        // Encoding text into a Vec cannot fail but for invalid UTF-8 in names, which are ours.
        if let Err(e) = TextEncoder::new().encode(&f.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The outcome label of an outbound request: the status code, or what went wrong.
pub fn outcome_of(result: &Result<reqwest::Response, reqwest::Error>) -> String {
    match result {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect-error".into(),
        Err(_) => "error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(&ModelIdentity { name: "m", version: "1", ensemble_sha256: "abc", preprocessing: "r1", device: "cpu" })
    }

    #[test]
    fn a_request_is_counted_under_its_route_pattern_with_the_otel_buckets() {
        let m = metrics();
        m.http_server_request("GET", "/reports/{id}", 200, Duration::from_millis(30));
        let text = m.render(&Gauges { queue: Some(crate::queue::Depth { queued: 2, running: 1, dead: 0, oldest_wait_s: 0.5 }), worker_running: 1, analyses_capacity: 32, inference_queue_depth: 0, inference_queue_capacity: 8 });
        assert!(text.contains(r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/reports/{id}",le="0.05"} 1"#), "{text}");
        assert!(text.contains(r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/reports/{id}",le="0.025"} 0"#), "{text}");
        assert!(text.contains("neurocds_analyses_capacity 32"), "{text}");
        assert!(text.contains(r#"neurocds_model_info{device="cpu",ensemble_sha256="abc",model="m",model_version="1",preprocessing="r1"} 1"#), "{text}");
    }

    #[test]
    fn stage_durations_are_recorded_in_seconds() {
        let m = metrics();
        let stages: std::collections::BTreeMap<String, u64> = [("inference".to_string(), 60u64)].into();
        m.analysis("recommended", "none", &stages);
        let text = m.render(&Gauges { queue: None, worker_running: 0, analyses_capacity: 1, inference_queue_depth: 0, inference_queue_capacity: 1 });
        assert!(text.contains(r#"neurocds_analysis_stage_duration_seconds_bucket{stage="inference",le="0.075"} 1"#), "{text}");
        assert!(text.contains(r#"neurocds_analyses_total{outcome="recommended",reason="none"} 1"#), "{text}");
    }

    /// Every metric the Grafana dashboard (`deploy/grafana/neurocds.json`) queries is one this
    /// service exposes, once each family has a sample.
    #[test]
    fn the_grafana_dashboard_refers_only_to_metrics_that_exist() {
        use crate::monitoring::{
            Snapshot,
            report::{Against, Judging, QuantityReport, VersionReport},
        };
        let m = metrics();
        m.http_server_request("GET", "/healthz", 200, Duration::from_millis(1));
        m.http_client_request(Peer::Fhir, "GET", "200", Duration::from_millis(1));
        m.hook("neurocds-brain-mri-order-sign", "order-sign", "recommended", true);
        m.analysis("recommended", "none", &std::collections::BTreeMap::from([("inference".to_string(), 5u64)]));
        m.inference_batch("cpu", 1, Duration::from_millis(5), &[Duration::from_millis(1)]);
        m.audit_write(1, Duration::from_millis(1));
        m.feedback("overridden");
        let quantity = QuantityReport { name: "calibrated_probability", title: "", against: Against::Validation, bins: Vec::new(), reference_n: 1, live_n: 1, psi: Some(0.1), ks: None, outside_training_range: None, status: "stable" };
        let overridden = crate::audit::query::RecommendationSummary { recommendation: "biopsy".into(), decisions: 1, with_feedback: 1, overridden: 1, override_rate: Some(1.0) };
        let version = VersionReport { model_version: "m@1".into(), loaded: true, analyses: 1, baseline_analyses: 0, recommended: 1.0, abstained: 0.0, out_of_scope: 0.0, unavailable: 0.0, quantities: vec![quantity], overrides: vec![overridden] };
        let epoch = time::OffsetDateTime::UNIX_EPOCH;
        m.monitoring(&Snapshot { computed_at: epoch, window_from: epoch, baseline_from: epoch, window_days: 30, baseline_days: 90, judging: Judging { psi_alert: 0.25, min_analyses: 50 }, validation_studies: None, versions: vec![version], alerts: Vec::new() });
        let text = m.render(&Gauges { queue: Some(crate::queue::Depth { queued: 0, running: 0, dead: 0, oldest_wait_s: 0.0 }), worker_running: 0, analyses_capacity: 1, inference_queue_depth: 0, inference_queue_capacity: 1 });
        let mut exposed = std::collections::HashSet::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
            exposed.insert(name.to_owned());
            if kind == "histogram" {
                exposed.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
        }
        let dashboard: serde_json::Value = serde_json::from_str(include_str!("../deploy/grafana/neurocds.json")).expect("the dashboard is JSON");
        let mut queried = 0;
        for panel in dashboard["panels"].as_array().expect("panels").iter().filter(|p| p["type"] != "row") {
            let targets = panel["targets"].as_array().filter(|t| !t.is_empty()).unwrap_or_else(|| panic!("panel {} queries nothing", panel["title"]));
            for expr in targets.iter().map(|t| t["expr"].as_str().expect("an expr")) {
                let names = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).filter(|t| t.starts_with("neurocds_") || t.starts_with("http_server_request_duration") || t.starts_with("http_client_request_duration"));
                for name in names {
                    assert!(exposed.contains(name), "panel {}: {name} is not a metric neurocds exposes", panel["title"]);
                    queried += 1;
                }
            }
        }
        assert!(queried > 20, "{queried}");
    }
}
