//! Structured JSON logs.
//!
//! Every line is one JSON object; lines written while a request is handled carry that request's
//! `request_id` (from the root span that `tracing_actix_web::TracingLogger` opens). The filter
//! comes from `NEUROCDS_LOG` (default `info`).
//!
//! What never goes to a log: tokens (the EHR's JWT, `fhirAuthorization.access_token`, DICOMweb
//! credentials) and PHI beyond opaque FHIR references. Code that logs a request logs its ids.

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// Installs the global subscriber. Safe to call more than once (tests do); later calls are no-ops.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_env("NEUROCDS_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry().with(filter).with(json).try_init();
}
