//! OpenTelemetry traces: one trace per hook, joined to the EHR's, across the queue and into the
//! FHIR and DICOMweb servers the service calls.
//!
//! ```text
//! POST /cds-services/{id}        server span (tracing-actix-web's root span; the EHR's
//! │                              `traceparent` is its parent when it sends one)
//! ├── GET fhir                   client span, `traceparent` sent on
//! └── analysis                   the worker's span, parented from the queued job (which may be
//!     │                          claimed by another process, seconds later)
//!     ├── series_search … inference   one span per stage, from the analysis's stopwatch
//!     └── GET dicomweb           client spans, `traceparent` sent on
//! ```
//!
//! Trace ids exist whether or not spans are exported: every request's log lines carry one
//! (`span.trace_id`), and so does its audited decision, so that a case report, a log line and a
//! trace name the same hook. Exporting is off until `traces.otlp_endpoint` names a collector
//! (OTLP over HTTP, protobuf); spans then leave in batches from a thread of their own.
//!
//! What a span never carries: URLs and queries (they hold patient ids and study UIDs), tokens,
//! bodies. Client spans name the peer, the server's address and the step.

use std::{collections::HashMap, time::SystemTime};

use opentelemetry::{
    Context, KeyValue,
    global::{self, BoxedSpan},
    propagation::TextMapPropagator,
    trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _},
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TracesSettings;

/// The instrumentation scope every span of ours is recorded under.
const SCOPE: &str = "neurocds";

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("traces.otlp_endpoint {endpoint:?} is not an http(s) URL")]
    Endpoint { endpoint: String },
    #[error("traces.sample_ratio {0} is not between 0 and 1")]
    SampleRatio(f64),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The tracer provider: exporting to the configured collector, or keeping trace ids only.
pub(super) fn provider(settings: &TracesSettings) -> Result<SdkTracerProvider, TracesError> {
    if !(0.0..=1.0).contains(&settings.sample_ratio) {
        return Err(TracesError::SampleRatio(settings.sample_ratio));
    }
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = settings.otlp_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) else {
        // Nothing leaves the process: our own roots are not recorded (their ids still exist,
        // for the logs and the decisions); an EHR's sampled trace is passed on as sampled.
        return Ok(builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))).build());
    };
    // A hook the EHR traced is traced here too; our own roots are sampled at the ratio.
    let builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio))));
    let url = url::Url::parse(endpoint)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| TracesError::Endpoint {
            endpoint: endpoint.into(),
        })?;
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", url.as_str().trim_end_matches('/')))
        .with_timeout(std::time::Duration::from_secs(settings.export_timeout_s))
        .build()
        .map_err(|e| TracesError::Exporter(e.to_string()))?;
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(std::time::Duration::from_millis(
            settings.export_interval_ms,
        ))
        .build();
    Ok(builder
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batches)
                .build(),
        )
        .build())
}

/// Makes `provider` the one our spans go to, and W3C trace context the propagation format
/// (tracing-actix-web reads the EHR's `traceparent` through it).
pub(super) fn install(provider: &SdkTracerProvider) {
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
}

/// The current span's trace id (32 hex digits), when there is a valid one.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The current span's context as a `traceparent` value, to travel with queued work.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current().context())
}

fn traceparent_of(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The span an analysis runs in: a child of the hook that queued it (its `traceparent`), or
/// a root when there is none. Log lines written while it runs carry its `trace_id`.
pub fn analysis_span(traceparent: Option<&str>, attempt: u32) -> tracing::Span {
    let span = tracing::info_span!(
        "analysis",
        otel.name = "analysis",
        otel.kind = "internal",
        attempt,
        trace_id = tracing::field::Empty
    );
    if let Some(tp) = traceparent {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), tp.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    record_trace_id(&span);
    span
}

/// Records `span`'s trace id in its `trace_id` field (declared empty), for its log lines.
pub(super) fn record_trace_id(span: &tracing::Span) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// Where an analysis's stage spans hang: the span current when its stopwatch started.
#[derive(Clone)]
pub struct StageParent {
    cx: Context,
}

impl StageParent {
    pub fn current() -> StageParent {
        StageParent {
            cx: tracing::Span::current().context(),
        }
    }

    /// Records a finished stage, `start` to `end`, as a child span. Stages are timed by the
    /// analysis's stopwatch; their spans are written when each one ends.
    pub fn stage(&self, name: &str, start: SystemTime, end: SystemTime) {
        if !self.cx.span().span_context().is_sampled() {
            return;
        }
        let tracer = global::tracer(SCOPE);
        let mut span = tracer
            .span_builder(name.to_owned())
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .start_with_context(&tracer, &self.cx);
        span.end_with_timestamp(end);
    }
}

/// One outbound request's client span. Its context goes out as `traceparent`.
pub struct ClientSpan {
    span: BoxedSpan,
    cx: Context,
}

impl ClientSpan {
    /// Starts the span for `method` to `peer` (`fhir`, `dicomweb`, `jwks`) at `url`'s server,
    /// doing `step`, as a child of the current span. Only the server's address and port are
    /// recorded from the URL.
    pub fn start(
        peer: &'static str,
        method: &'static str,
        step: &str,
        url: &url::Url,
    ) -> ClientSpan {
        let parent = tracing::Span::current().context();
        let tracer = global::tracer(SCOPE);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("neurocds.peer", peer),
            KeyValue::new("neurocds.step", step.to_owned()),
        ];
        if let Some(host) = url.host_str() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_or_known_default() {
            attributes.push(KeyValue::new("server.port", port as i64));
        }
        let span = tracer
            .span_builder(format!("{method} {peer}"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        let cx = parent.with_remote_span_context(span.span_context().clone());
        ClientSpan { span, cx }
    }

    /// The `traceparent` to send with the request (none when the span is not valid).
    pub fn traceparent(&self) -> Option<String> {
        traceparent_of(&self.cx)
    }

    /// Ends the span with the answer's status code, or the error class when there was none.
    pub fn end(mut self, status: Option<u16>, error: Option<&str>) {
        if let Some(code) = status {
            self.span
                .set_attribute(KeyValue::new("http.response.status_code", code as i64));
            if code >= 400 {
                self.span
                    .set_attribute(KeyValue::new("error.type", code.to_string()));
                self.span.set_status(Status::error(""));
            }
        }
        if let Some(class) = error {
            self.span
                .set_attribute(KeyValue::new("error.type", class.to_owned()));
            self.span.set_status(Status::error(""));
        }
        self.span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>, sample_ratio: f64) -> TracesSettings {
        TracesSettings { otlp_endpoint: endpoint.map(str::to_owned), sample_ratio, ..TracesSettings::default() }
    }

    #[test]
    fn a_collector_that_is_not_an_http_url_or_a_ratio_outside_zero_to_one_stops_start_up() {
        assert!(matches!(provider(&settings(Some("otel-collector:4318"), 1.0)), Err(TracesError::Endpoint { .. })));
        assert!(matches!(provider(&settings(Some("ftp://otel-collector:4318"), 1.0)), Err(TracesError::Endpoint { .. })));
        assert!(matches!(provider(&settings(None, 1.5)), Err(TracesError::SampleRatio(_))));
        assert!(matches!(provider(&settings(None, -0.1)), Err(TracesError::SampleRatio(_))));
    }

    #[test]
    fn without_a_collector_nothing_is_set_up_to_export_and_an_empty_endpoint_means_none() {
        assert!(provider(&settings(None, 1.0)).is_ok());
        assert!(provider(&settings(Some("  "), 0.5)).is_ok());
    }
}
