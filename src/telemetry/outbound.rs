//! One outbound HTTP request, observed: timed into `http_client_request_duration_seconds`, and
//! sent inside a client span whose context travels with it as `traceparent`. The FHIR, DICOMweb
//! and JWKS clients send every request through [`send`].

use std::time::Instant;

use reqwest::header::HeaderValue;

use super::traces::{ClientSpan, TRACEPARENT};
use crate::metrics::{Metrics, Peer, outcome_of};

/// Sends `request` (a `method` request to `peer`, doing `step`) and records it. The caller
/// reads the body; the time recorded is until the answer's head.
pub async fn send(
    request: reqwest::RequestBuilder,
    peer: Peer,
    method: &'static str,
    step: &str,
    metrics: Option<&Metrics>,
) -> Result<reqwest::Response, reqwest::Error> {
    let (client, request) = request.build_split();
    let mut request = request?;
    let span = ClientSpan::start(peer.as_str(), method, step, request.url());
    if let Some(value) = span
        .traceparent()
        .and_then(|tp| HeaderValue::from_str(&tp).ok())
    {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    let started = Instant::now();
    let result = client.execute(request).await;
    let outcome = outcome_of(&result);
    if let Some(m) = metrics {
        m.http_client_request(peer, method, &outcome, started.elapsed());
    }
    match &result {
        Ok(response) => span.end(Some(response.status().as_u16()), None),
        Err(_) => span.end(None, Some(&outcome)),
    }
    result
}
