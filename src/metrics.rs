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
//!
//! No label ever holds a patient, a study, a user, a URL or a token: label values come from
//! closed sets the code names (routes, outcomes, stages, peers), so a scrape carries no PHI and
//! the number of series stays bounded whatever callers send.
//!
//! Each [`Metrics`] has its own registry (tests build many services in one process).

use std::{sync::Arc, time::Duration};

use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

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
    fn as_str(self) -> &'static str {
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
}
