//! The hook request an EHR POSTs to `/cds-services/{id}` (CDS Hooks 2.0 §HTTP Request), parsed
//! once into types the rest of the service can trust.
//!
//! Wire format (order-sign; order-select adds `context.selections`):
//! ```json
//! { "hook": "order-sign", "hookInstance": "d1577c69-…",
//!   "fhirServer": "https://ehr.example.org/fhir",
//!   "fhirAuthorization": { "access_token": "…", "token_type": "Bearer", "expires_in": 300,
//!                          "scope": "patient/ImagingStudy.read", "subject": "cds-service" },
//!   "context": { "userId": "Practitioner/123", "patientId": "1288992", "encounterId": "89284",
//!                "draftOrders": { "resourceType": "Bundle", "entry": [ … ServiceRequest … ] } },
//!   "prefetch": { "patient": { … }, "priorImaging": { "resourceType": "Bundle", … } } }
//! ```
//! Unknown elements are ignored (the EHR may send more than we use).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

/// The two hooks neurocds answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum Hook {
    #[serde(rename = "order-select")]
    OrderSelect,
    #[serde(rename = "order-sign")]
    OrderSign,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::OrderSelect => "order-select",
            Hook::OrderSign => "order-sign",
        }
    }

    pub fn parse(s: &str) -> Option<Hook> {
        match s {
            "order-select" => Some(Hook::OrderSelect),
            "order-sign" => Some(Hook::OrderSign),
            _ => None,
        }
    }
}

/// The bearer token the EHR lends us for its FHIR server. Never stored, never logged: `Debug`
/// prints only that a token is present.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct FhirAuthorization {
    #[schema(write_only)]
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

impl std::fmt::Debug for FhirAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirAuthorization").field("access_token", &"<redacted>").field("scope", &self.scope).finish()
    }
}

/// The JSON body as sent, before checks (also its schema in the OpenAPI document).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = HookRequestBody)]
pub(crate) struct RawRequest {
    /// `order-select` or `order-sign`, matching the service invoked.
    #[schema(value_type = Hook)]
    hook: String,
    /// A UUID the EHR gives this invocation.
    hook_instance: String,
    #[serde(default)]
    fhir_server: Option<String>,
    #[serde(default)]
    fhir_authorization: Option<FhirAuthorization>,
    /// `userId`, `patientId`, `encounterId`, `draftOrders` (a Bundle), and on order-select
    /// `selections`.
    #[schema(value_type = Object)]
    context: Value,
    /// Prefetched resources by the keys of the discovery response; `null` when the EHR found
    /// nothing.
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, Value>>)]
    prefetch: Option<HashMap<String, Value>>,
}

/// A checked hook request.
#[derive(Debug, Clone)]
pub struct HookRequest {
    pub hook: Hook,
    pub hook_instance: String,
    pub fhir_server: Option<url::Url>,
    pub fhir_authorization: Option<FhirAuthorization>,
    /// `Practitioner/123`, `PractitionerRole/…`.
    pub user_id: String,
    /// The bare id, as in `context.patientId`.
    pub patient_id: String,
    /// `Patient/{patient_id}`.
    pub patient_reference: String,
    pub encounter_id: Option<String>,
    /// ServiceRequests among the draft orders (on order-select: only the selected ones).
    pub orders: Vec<Value>,
    /// Prefetch as sent; a key present with `null` means "the EHR looked and found nothing".
    pub prefetch: HashMap<String, Value>,
}

/// Why a request body was refused (answered 400 with an OperationOutcome naming the field).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("the request body is not valid CDS Hooks JSON: {0}")]
    Malformed(String),
    #[error("`hook` is `{got}`, but service `{service}` answers `{expected}`")]
    WrongHook { got: String, expected: &'static str, service: String },
    #[error("`{field}` {problem}")]
    Field { field: &'static str, problem: String },
}

fn field(field: &'static str, problem: impl Into<String>) -> RequestError {
    RequestError::Field { field, problem: problem.into() }
}

impl HookRequest {
    /// Parses and checks a request for the service `service_id`, which answers `expected`.
    pub fn parse(body: &[u8], service_id: &str, expected: Hook) -> Result<HookRequest, RequestError> {
        let raw: RawRequest = serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
        if Hook::parse(&raw.hook) != Some(expected) {
            return Err(RequestError::WrongHook { got: raw.hook, expected: expected.as_str(), service: service_id.into() });
        }
        if raw.hook_instance.trim().is_empty() {
            return Err(field("hookInstance", "is empty"));
        }
        let fhir_server = match raw.fhir_server.as_deref() {
            None => None,
            Some(s) => Some(url::Url::parse(s).map_err(|e| field("fhirServer", format!("is not an absolute URL: {e}")))?),
        };
        if raw.fhir_authorization.is_some() && fhir_server.is_none() {
            return Err(field("fhirAuthorization", "is present without fhirServer"));
        }
        if let Some(a) = &raw.fhir_authorization {
            if !a.token_type.eq_ignore_ascii_case("bearer") {
                return Err(field("fhirAuthorization.token_type", "must be Bearer"));
            }
            if a.access_token.is_empty() {
                return Err(field("fhirAuthorization.access_token", "is empty"));
            }
        }
        let ctx = raw.context.as_object().ok_or_else(|| field("context", "must be an object"))?;
        let text = |name: &'static str| -> Result<Option<String>, RequestError> {
            match ctx.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(RequestError::Field { field: name, problem: "must be a non-empty string".into() }),
            }
        };
        let user_id = text("userId")?.ok_or_else(|| field("context.userId", "is required"))?;
        if !(user_id.starts_with("Practitioner/") || user_id.starts_with("PractitionerRole/")) {
            return Err(field("context.userId", "must be Practitioner/{id} or PractitionerRole/{id}"));
        }
        let patient_id = text("patientId")?.ok_or_else(|| field("context.patientId", "is required"))?;
        if patient_id.contains('/') || patient_id.chars().any(char::is_whitespace) {
            return Err(field("context.patientId", "must be a bare FHIR id"));
        }
        let encounter_id = text("encounterId")?;
        let draft = ctx.get("draftOrders").ok_or_else(|| field("context.draftOrders", "is required"))?;
        if draft.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(field("context.draftOrders", "must be a FHIR Bundle"));
        }
        let entries: Vec<&Value> = draft
            .get("entry")
            .and_then(Value::as_array)
            .map(|es| es.iter().filter_map(|e| e.get("resource")).collect())
            .unwrap_or_default();
        let selections: Option<Vec<String>> = match expected {
            Hook::OrderSign => None,
            Hook::OrderSelect => {
                let sel = ctx.get("selections").and_then(Value::as_array).ok_or_else(|| field("context.selections", "is required on order-select"))?;
                Some(sel.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            }
        };
        let orders = entries
            .into_iter()
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("ServiceRequest"))
            .filter(|r| match &selections {
                None => true,
                Some(sel) => r.get("id").and_then(Value::as_str).is_some_and(|id| sel.iter().any(|s| s == &format!("ServiceRequest/{id}"))),
            })
            .cloned()
            .collect();
        Ok(HookRequest {
            hook: expected,
            hook_instance: raw.hook_instance,
            fhir_server,
            fhir_authorization: raw.fhir_authorization,
            user_id,
            patient_reference: format!("Patient/{patient_id}"),
            patient_id,
            encounter_id,
            orders,
            prefetch: raw.prefetch.unwrap_or_default(),
        })
    }

    pub fn patient_ref(&self) -> String {
        self.patient_reference.clone()
    }

    pub fn patient_ref_str(&self) -> &str {
        &self.patient_reference
    }
}

/// Recognises brain MRI orders by code: CPT 70551/70552/70553, the LOINC MR brain codes, and
/// codes a site adds in `hooks.extra_brain_mri_codes` (as `system|code`).
#[derive(Debug, Clone)]
pub struct BrainMriCodes {
    codes: Vec<(String, String)>,
}

pub const CPT: &str = "http://www.ama-assn.org/go/cpt";
pub const LOINC: &str = "http://loinc.org";

impl BrainMriCodes {
    pub fn new(extra: &[String]) -> BrainMriCodes {
        let mut codes: Vec<(String, String)> = [
            (CPT, "70551"), // MRI brain (including brain stem) without contrast
            (CPT, "70552"), // … with contrast
            (CPT, "70553"), // … without contrast, followed by with contrast
            (LOINC, "24590-2"), // MR Brain WO and W contrast IV
            (LOINC, "24587-8"), // MR Brain WO contrast
            (LOINC, "24588-6"), // MR Brain W contrast IV
        ]
        .iter()
        .map(|(s, c)| (s.to_string(), c.to_string()))
        .collect();
        for e in extra {
            if let Some((s, c)) = e.split_once('|') {
                codes.push((s.to_string(), c.to_string()));
            }
        }
        BrainMriCodes { codes }
    }

    /// True when any coding of `ServiceRequest.code` is one of ours.
    pub fn matches(&self, service_request: &Value) -> bool {
        let codings = service_request.pointer("/code/coding").and_then(Value::as_array);
        codings.into_iter().flatten().any(|c| {
            let system = c.get("system").and_then(Value::as_str).unwrap_or_default();
            let code = c.get("code").and_then(Value::as_str).unwrap_or_default();
            self.codes.iter().any(|(s, k)| s == system && k == code)
        })
    }
}
