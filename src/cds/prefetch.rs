//! Prefetch: use what the EHR sent, fetch what is missing, or answer 412.
//!
//! Per key (CDS Hooks 2.0 §Prefetch):
//! - present with a value → used as sent;
//! - present with `null` → the EHR looked and found nothing: used as "nothing";
//! - an `OperationOutcome` → the EHR's own fetch failed: fetched again ourselves if we can;
//! - absent → fetched from `fhirServer` with the `fhirAuthorization` bearer token, if the
//!   egress policy lets this client name that server ([`FhirAccess`]).
//!
//! If a key can be neither used nor fetched, the hook is answered **412** with an
//! OperationOutcome (spec requirement 54).
//!
//! The prior-imaging template asks for the studies only (`_include` is outside the query subset
//! the spec recommends and EHRs implement); the Endpoints they reference and the bundle lacks
//! are then read by reference from `fhirServer` when this client may use it. An Endpoint that
//! cannot be read leaves its study to `dicomweb.default_base_url`, or not retrievable.

use serde_json::Value;

use super::{
    discovery::{PREFETCH_PATIENT, PREFETCH_PRIOR_IMAGING},
    hook::HookRequest,
};
use crate::fhir::client::{FhirClient, bundle_resources};

/// What the analysis needs from the EHR.
#[derive(Debug, Clone, Default)]
pub struct Prefetched {
    pub patient: Option<Value>,
    /// ImagingStudy and Endpoint resources.
    pub imaging: Vec<Value>,
    /// Which keys we had to fetch ourselves (for the audit trail).
    pub fetched: Vec<&'static str>,
}

/// Whether the hook's `fhirServer` may be used, as the egress policy decided for this client.
#[derive(Debug, Clone, Copy)]
pub enum FhirAccess<'a> {
    /// The request names no FHIR server.
    NotGiven,
    /// It names one this client may not have the service reach.
    Refused,
    Allowed(&'a url::Url),
}

impl<'a> FhirAccess<'a> {
    fn base(self, key: &'static str) -> Result<&'a url::Url, PrefetchError> {
        match self {
            FhirAccess::NotGiven => Err(PrefetchError::NoFhirServer { key }),
            FhirAccess::Refused => Err(PrefetchError::Refused { key }),
            FhirAccess::Allowed(base) => Ok(base),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrefetchError {
    #[error("prefetch `{key}` is missing and the request has no fhirServer to fetch it from")]
    NoFhirServer { key: &'static str },
    /// Says nothing about the server named (the same text for any refused target).
    #[error("prefetch `{key}` is missing, and fhirServer is not a FHIR server this client may name")]
    Refused { key: &'static str },
    #[error("prefetch `{key}` could not be fetched: {reason}")]
    FetchFailed { key: &'static str, reason: String },
}

/// A prefetch entry, borrowed from the request (what is kept of it is copied once).
enum Slot<'a> {
    Value(&'a Value),
    Nothing,
    Missing,
}

fn slot<'a>(req: &'a HookRequest, key: &str) -> Slot<'a> {
    match req.prefetch.get(key) {
        None => Slot::Missing,
        Some(Value::Null) => Slot::Nothing,
        Some(v) if v.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") => Slot::Missing,
        Some(v) => Slot::Value(v),
    }
}

pub async fn resolve(req: &HookRequest, fhir: &FhirClient, access: FhirAccess<'_>) -> Result<Prefetched, PrefetchError> {
    let token = req.fhir_authorization.as_ref().map(|a| a.access_token.as_str());
    let mut out = Prefetched::default();
    out.patient = match slot(req, PREFETCH_PATIENT) {
        Slot::Value(v) => Some(v.clone()),
        Slot::Nothing => None,
        Slot::Missing => {
            let base = access.base(PREFETCH_PATIENT)?;
            out.fetched.push(PREFETCH_PATIENT);
            fhir.read(base, &req.patient_ref(), token)
                .await
                .map_err(|e| PrefetchError::FetchFailed { key: PREFETCH_PATIENT, reason: e.to_string() })?
        }
    };
    out.imaging = match slot(req, PREFETCH_PRIOR_IMAGING) {
        Slot::Value(v) => bundle_resources(v),
        Slot::Nothing => Vec::new(),
        Slot::Missing => {
            let base = access.base(PREFETCH_PRIOR_IMAGING)?;
            out.fetched.push(PREFETCH_PRIOR_IMAGING);
            let query = format!(
                "ImagingStudy?patient={}&modality=MR&_sort=-started&_count=50",
                url::form_urlencoded::byte_serialize(req.patient_id.as_bytes()).collect::<String>()
            );
            fhir.search(base, &query, token)
                .await
                .map_err(|e| PrefetchError::FetchFailed { key: PREFETCH_PRIOR_IMAGING, reason: e.to_string() })?
        }
    };
    let unresolved = unresolved_endpoints(&out.imaging);
    if let (FhirAccess::Allowed(base), false) = (access, unresolved.is_empty()) {
        out.fetched.push(ENDPOINTS);
        for reference in unresolved.into_iter().take(MAX_ENDPOINT_READS) {
            match fhir.read(base, &reference, token).await {
                Ok(Some(endpoint)) if endpoint.get("resourceType").and_then(Value::as_str) == Some("Endpoint") => out.imaging.push(endpoint),
                Ok(_) => tracing::warn!("an Endpoint the prior study references is not on the FHIR server"),
                Err(e) => tracing::warn!(error = %e, "could not read an Endpoint the prior study references"),
            }
        }
    }
    Ok(out)
}

/// What `fetched` says when Endpoints were read by reference.
pub const ENDPOINTS: &str = "endpoints";
/// Endpoints read by reference at most per hook (a study has one, rarely one per series).
const MAX_ENDPOINT_READS: usize = 4;

/// `Endpoint/{id}` references of the ImagingStudies (study and series level) that no Endpoint in
/// `resources` answers, most recent study first, each once.
fn unresolved_endpoints(resources: &[Value]) -> Vec<String> {
    let present: std::collections::HashSet<String> = resources
        .iter()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Endpoint"))
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(|id| format!("Endpoint/{id}")))
        .collect();
    let mut studies: Vec<&Value> = resources.iter().filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("ImagingStudy")).collect();
    studies.sort_by(|a, b| b.get("started").and_then(Value::as_str).unwrap_or("").cmp(a.get("started").and_then(Value::as_str).unwrap_or("")));
    let mut out: Vec<String> = Vec::new();
    for study in studies {
        let series = study.get("series").and_then(Value::as_array).into_iter().flatten();
        let lists = std::iter::once(study.get("endpoint")).chain(series.map(|s| s.get("endpoint")));
        for reference in lists.flatten().filter_map(Value::as_array).flatten().filter_map(|e| e.get("reference").and_then(Value::as_str)) {
            let is_relative = reference.strip_prefix("Endpoint/").is_some_and(|id| !id.is_empty() && !id.contains('/'));
            if is_relative && !present.contains(reference) && !out.iter().any(|r| r == reference) {
                out.push(reference.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoints_the_bundle_lacks_are_listed_once_most_recent_study_first() {
        let resources = vec![
            json!({ "resourceType": "ImagingStudy", "started": "2020-01-01", "endpoint": [{ "reference": "Endpoint/old" }] }),
            json!({ "resourceType": "ImagingStudy", "started": "2026-01-01", "endpoint": [{ "reference": "Endpoint/pacs" }],
                    "series": [{ "endpoint": [{ "reference": "Endpoint/vna" }, { "reference": "Endpoint/pacs" }] }] }),
            json!({ "resourceType": "ImagingStudy", "endpoint": [{ "reference": "https://elsewhere.example/fhir/Endpoint/x" }, { "reference": "Endpoint/here" }] }),
            json!({ "resourceType": "Endpoint", "id": "here" }),
        ];
        assert_eq!(unresolved_endpoints(&resources), vec!["Endpoint/pacs", "Endpoint/vna", "Endpoint/old"]);
    }
}
