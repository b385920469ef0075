//! A thin FHIR R4 REST client over reqwest: read, search with paging, conditional create.
//!
//! The bearer token is the one the EHR lent for this hook (`fhirAuthorization`); it is passed in
//! per call, used for that call only, never stored and never logged. Paging links are followed
//! only while they stay on the FHIR server's own origin, so the token is never sent elsewhere;
//! redirects are not followed, and every address is checked by the [`AddressGuard`] (which
//! FHIR servers a client may name at all is the caller's check, `EgressPolicy::fhir_server`).

use std::time::Duration;

use reqwest::{StatusCode, header};
use serde_json::Value;
use url::Url;

use crate::egress::{self, AddressGuard, BodyError, read_capped};
use crate::{
    metrics::{Metrics, Peer},
    telemetry::outbound,
};

const FHIR_JSON: &str = "application/fhir+json";

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error("FHIR server {origin}: {step}: {reason}")]
    Transport { origin: String, step: String, reason: String },
    #[error("FHIR server {origin}: {step}: HTTP {status}")]
    Status { origin: String, step: String, status: u16 },
    #[error("FHIR server {origin}: {step}: the answer is not FHIR JSON: {reason}")]
    Body { origin: String, step: String, reason: String },
    #[error("FHIR server {origin}: {step}: the answer is larger than {limit} bytes (fhir.max_response_bytes)")]
    TooLarge { origin: String, step: String, limit: u64 },
    /// The address guard refused the server's address. Says nothing about the target.
    #[error("the FHIR server is not one this service may reach")]
    Refused,
}

#[derive(Clone)]
pub struct FhirClient {
    http: reqwest::Client,
    guard: AddressGuard,
    max_pages: usize,
    max_response_bytes: u64,
    metrics: Option<Metrics>,
}

impl FhirClient {
    pub fn new(settings: &crate::config::FhirSettings, guard: &AddressGuard) -> Result<FhirClient, reqwest::Error> {
        let http = guard
            .http_client()
            .timeout(Duration::from_secs(settings.request_timeout_s))
            .connect_timeout(Duration::from_secs(settings.request_timeout_s.min(5)))
            .build()?;
        Ok(FhirClient { http, guard: guard.clone(), max_pages: settings.max_pages.max(1), max_response_bytes: settings.max_response_bytes, metrics: None })
    }

    /// Records every request's duration and outcome under `peer="fhir"`.
    pub fn with_metrics(mut self, metrics: Metrics) -> FhirClient {
        self.metrics = Some(metrics);
        self
    }

    /// Sends `request`, timed for the metrics and traced ([`outbound::send`]).
    async fn send(&self, method: &'static str, step: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
        outbound::send(request, Peer::Fhir, method, step, self.metrics.as_ref()).await
    }

    /// `GET {base}/{Type}/{id}`; `Ok(None)` on 404/410.
    pub async fn read(&self, base: &Url, reference: &str, token: Option<&str>) -> Result<Option<Value>, FhirError> {
        let url = join(base, reference);
        let step = format!("read {}", reference.split('/').next().unwrap_or("resource"));
        let resp = self.get(&url, token, &step).await?;
        match resp.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
            s if s.is_success() => Ok(Some(json_body(resp, base, &step, self.max_response_bytes).await?)),
            s => Err(FhirError::Status { origin: origin(base), step, status: s.as_u16() }),
        }
    }

    /// `GET {base}/{Type}?{query}`, following `next` links (same origin only, at most
    /// `fhir.max_pages` pages). Returns every entry's resource, included resources too.
    pub async fn search(&self, base: &Url, type_and_query: &str, token: Option<&str>) -> Result<Vec<Value>, FhirError> {
        let step = format!("search {}", type_and_query.split('?').next().unwrap_or("resources"));
        let mut url = join(base, type_and_query);
        let mut out = Vec::new();
        for _ in 0..self.max_pages {
            let resp = self.get(&url, token, &step).await?;
            if !resp.status().is_success() {
                return Err(FhirError::Status { origin: origin(base), step, status: resp.status().as_u16() });
            }
            let bundle = json_body(resp, base, &step, self.max_response_bytes).await?;
            if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
                return Err(FhirError::Body { origin: origin(base), step, reason: "expected a Bundle".into() });
            }
            out.extend(bundle_resources(&bundle));
            let next = bundle
                .get("link")
                .and_then(Value::as_array)
                .and_then(|ls| ls.iter().find(|l| l.get("relation").and_then(Value::as_str) == Some("next")))
                .and_then(|l| l.get("url").and_then(Value::as_str))
                .and_then(|u| Url::parse(u).ok().or_else(|| base.join(u).ok()));
            match next {
                Some(n) if n.origin() == base.origin() => url = n,
                Some(_) => {
                    tracing::warn!(step, "not following a paging link to another origin");
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// `POST {base}/{Type}` with `If-None-Exist`, so retries of one hook create one resource.
    /// Returns the `Location` the server gave, if any.
    pub async fn conditional_create(&self, base: &Url, resource: &Value, if_none_exist: &str, token: Option<&str>) -> Result<Option<String>, FhirError> {
        let rtype = resource.get("resourceType").and_then(Value::as_str).unwrap_or("Resource");
        let step = format!("create {rtype}");
        self.guard.check_literal(base).map_err(|_| FhirError::Refused)?;
        let mut req = self
            .http
            .post(join(base, rtype))
            .header(header::ACCEPT, FHIR_JSON)
            .header(header::CONTENT_TYPE, FHIR_JSON)
            .header("If-None-Exist", if_none_exist)
            .body(resource.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = self.send("POST", &step, req).await.map_err(|e| transport(base, &step, e))?;
        if !resp.status().is_success() {
            return Err(FhirError::Status { origin: origin(base), step, status: resp.status().as_u16() });
        }
        Ok(resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned))
    }

    /// `POST {base}` with a transaction Bundle.
    pub async fn transaction(&self, base: &Url, bundle: &Value, token: Option<&str>) -> Result<(), FhirError> {
        let step = "transaction".to_owned();
        self.guard.check_literal(base).map_err(|_| FhirError::Refused)?;
        let mut req = self.http.post(base.clone()).header(header::ACCEPT, FHIR_JSON).header(header::CONTENT_TYPE, FHIR_JSON).body(bundle.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = self.send("POST", &step, req).await.map_err(|e| transport(base, &step, e))?;
        if !resp.status().is_success() {
            return Err(FhirError::Status { origin: origin(base), step, status: resp.status().as_u16() });
        }
        Ok(())
    }

    async fn get(&self, url: &Url, token: Option<&str>, step: &str) -> Result<reqwest::Response, FhirError> {
        self.guard.check_literal(url).map_err(|_| FhirError::Refused)?;
        let mut req = self.http.get(url.clone()).header(header::ACCEPT, FHIR_JSON);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send("GET", step, req).await.map_err(|e| transport(url, step, e))
    }
}

/// The resources of a Bundle's entries.
pub fn bundle_resources(bundle: &Value) -> Vec<Value> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(|es| es.iter().filter_map(|e| e.get("resource").cloned()).collect())
        .unwrap_or_default()
}

fn join(base: &Url, path: &str) -> Url {
    let mut s = base.as_str().trim_end_matches('/').to_owned();
    s.push('/');
    s.push_str(path.trim_start_matches('/'));
    Url::parse(&s).unwrap_or_else(|_| base.clone())
}

fn origin(u: &Url) -> String {
    u.origin().ascii_serialization()
}

fn transport(u: &Url, step: &str, e: reqwest::Error) -> FhirError {
    if egress::refused_in_chain(&e) {
        return FhirError::Refused;
    }
    // reqwest's Display may include the URL (never a token: tokens travel in headers).
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    FhirError::Transport { origin: origin(u), step: step.into(), reason }
}

/// The answer's JSON: read as a stream and refused as soon as it passes `limit` bytes (a
/// declared Content-Length over the limit is refused before any byte is read), and parsed on
/// the blocking pool when it is large, so one huge Bundle never stalls the hooks beside it.
async fn json_body(resp: reqwest::Response, base: &Url, step: &str, limit: u64) -> Result<Value, FhirError> {
    let body = read_capped(resp, limit).await.map_err(|e| match e {
        BodyError::TooLarge { limit } => FhirError::TooLarge { origin: origin(base), step: step.into(), limit },
        BodyError::Transport(e) => transport(base, step, e),
    })?;
    let not_json = |reason: String| FhirError::Body { origin: origin(base), step: step.into(), reason };
    let parsed = crate::offload::parse_off_runtime(body, |body| serde_json::from_slice::<Value>(body)).await.map_err(|e| not_json(e.to_string()))?;
    parsed.map_err(|e| not_json(e.to_string()))
}
