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

enum Slot {
    Value(Value),
    Nothing,
    Missing,
}

fn slot(req: &HookRequest, key: &str) -> Slot {
    match req.prefetch.get(key) {
        None => Slot::Missing,
        Some(Value::Null) => Slot::Nothing,
        Some(v) if v.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") => Slot::Missing,
        Some(v) => Slot::Value(v.clone()),
    }
}

pub async fn resolve(req: &HookRequest, fhir: &FhirClient, access: FhirAccess<'_>) -> Result<Prefetched, PrefetchError> {
    let token = req.fhir_authorization.as_ref().map(|a| a.access_token.as_str());
    let mut out = Prefetched::default();
    out.patient = match slot(req, PREFETCH_PATIENT) {
        Slot::Value(v) => Some(v),
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
        Slot::Value(v) => bundle_resources(&v),
        Slot::Nothing => Vec::new(),
        Slot::Missing => {
            let base = access.base(PREFETCH_PRIOR_IMAGING)?;
            out.fetched.push(PREFETCH_PRIOR_IMAGING);
            let query = format!(
                "ImagingStudy?patient={}&modality=MR&_include=ImagingStudy:endpoint&_count=50",
                url::form_urlencoded::byte_serialize(req.patient_id.as_bytes()).collect::<String>()
            );
            fhir.search(base, &query, token)
                .await
                .map_err(|e| PrefetchError::FetchFailed { key: PREFETCH_PRIOR_IMAGING, reason: e.to_string() })?
        }
    };
    Ok(out)
}
