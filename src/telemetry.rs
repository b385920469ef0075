//! Structured JSON logs and OpenTelemetry traces.
//!
//! Every log line is one JSON object; lines written while a request is handled carry that
//! request's `request_id` and `trace_id` (from the root span, [`RequestSpan`], that
//! `tracing_actix_web::TracingLogger` opens), and lines written while an analysis runs carry the
//! `trace_id` of the hook that queued it. The filter comes from `NEUROCDS_LOG` (default `info`).
//! Traces: see [`traces`].
//!
//! What never goes to a log or a span: tokens (the EHR's JWT, `fhirAuthorization.access_token`,
//! DICOMweb credentials) and PHI beyond opaque FHIR references. Code that logs a request logs
//! its ids.

pub mod outbound;
mod request_span;
pub mod traces;

pub use request_span::RequestSpan;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, filter::filter_fn, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::TracesSettings;

/// Installs the global subscriber with traces kept local (trace ids in logs, nothing
/// exported). Safe to call more than once (tests do); later calls are no-ops.
pub fn init(default_filter: &str) {
    if let Ok(telemetry) = init_with(default_filter, &TracesSettings::default()) {
        // Nothing to flush, and the provider must outlive every span: kept for the process.
        std::mem::forget(telemetry);
    }
}

/// Installs the global subscriber, exporting traces as `traces` says. Keep the returned
/// [`Telemetry`] until the process ends: dropping it sends the spans still buffered.
///
/// The log filter (`NEUROCDS_LOG`) is the log layer's alone: our own spans reach the trace
/// layer at `info` whatever the log level, so that trace ids, the EHR's trace context and the
/// decisions' `trace_id` do not depend on how verbose the logs are. Log events never become
/// span events.
pub fn init_with(default_filter: &str, traces: &TracesSettings) -> Result<Telemetry, traces::TracesError> {
    let provider = traces::provider(traces)?;
    let filter = EnvFilter::try_from_env("NEUROCDS_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false).with_target(true).with_writer(std::io::stderr).with_filter(filter);
    // Spans only: log events stay in the logs (an error's text may name a URL), not on spans.
    let ours = filter_fn(|m| m.is_span() && m.target().starts_with("neurocds") && *m.level() <= tracing::Level::INFO);
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("neurocds")).with_tracked_inactivity(false).with_filter(ours);
    if tracing_subscriber::registry().with(json).with(otel).try_init().is_ok() {
        traces::install(&provider);
    }
    Ok(Telemetry { provider })
}

/// The tracer provider, flushed and shut down when dropped.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}
