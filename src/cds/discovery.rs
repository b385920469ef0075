//! `GET /cds-services`: the services neurocds offers and the data it asks EHRs to prefetch.
//!
//! At order time the ordered study does not exist yet, so the analysis uses the patient's most
//! recent *prior* brain MR: the prefetch asks for MR ImagingStudies with their Endpoints.

use serde::Serialize;
use serde_json::{Value, json};

use super::hook::Hook;

/// One entry of the discovery response (CDS Hooks 2.0 §Response).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDescription {
    pub hook: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub id: &'static str,
    /// Prefetch templates by key (FHIR queries with `{{context.patientId}}`).
    #[schema(value_type = Object)]
    pub prefetch: Value,
    pub usage_requirements: &'static str,
}

pub const ORDER_SELECT_ID: &str = "neurocds-brain-mri-order-select";
pub const ORDER_SIGN_ID: &str = "neurocds-brain-mri-order-sign";

/// The service ids, as the OpenAPI document's enum for `{id}` (a test checks they are
/// [`ORDER_SELECT_ID`] and [`ORDER_SIGN_ID`]).
#[derive(Serialize, utoipa::ToSchema)]
pub enum ServiceId {
    #[serde(rename = "neurocds-brain-mri-order-select")]
    OrderSelect,
    #[serde(rename = "neurocds-brain-mri-order-sign")]
    OrderSign,
}

/// Prefetch keys; tokens are `{{context.patientId}}` as the spec requires, and the queries stay
/// within the spec's recommended subset (read; search by reference, token equality, `_sort`,
/// `_count`; no `_include`: the Endpoints are read by reference, see `prefetch`).
pub const PREFETCH_PATIENT: &str = "patient";
pub const PREFETCH_PRIOR_IMAGING: &str = "priorImaging";

pub fn prefetch_templates() -> Value {
    json!({
        PREFETCH_PATIENT: "Patient/{{context.patientId}}",
        PREFETCH_PRIOR_IMAGING: "ImagingStudy?patient={{context.patientId}}&modality=MR&_sort=-started&_count=20"
    })
}

const USAGE: &str = "Needs read access to the patient's Patient, ImagingStudy and Endpoint resources (prefetch or fhirAuthorization), \
and a DICOMweb (WADO-RS) endpoint for the prior brain MR. Advisory only: neurocds never places or changes orders.";

/// The discovery response: `{"services": [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Services {
    pub services: Vec<ServiceDescription>,
}

pub fn services() -> Vec<ServiceDescription> {
    vec![
        ServiceDescription {
            hook: Hook::OrderSelect.as_str(),
            title: "Brain lesion AI: glioblastoma vs CNS lymphoma (order-select)",
            description: "When a brain MRI is selected, starts an AI analysis of the patient's most recent prior brain MR \
(T1 post-contrast and T2) estimating whether an enhancing lesion is more likely glioblastoma or primary CNS lymphoma.",
            id: ORDER_SELECT_ID,
            prefetch: prefetch_templates(),
            usage_requirements: USAGE,
        },
        ServiceDescription {
            hook: Hook::OrderSign.as_str(),
            title: "Brain lesion AI: glioblastoma vs CNS lymphoma (order-sign)",
            description: "When a brain MRI order is signed, advises whether stereotactic biopsy (lymphoma likely; hold \
corticosteroids until tissue is obtained if clinically safe), resection planning (glioblastoma likely) or tumour-board review fits, \
from an AI ensemble reading the most recent prior brain MR.",
            id: ORDER_SIGN_ID,
            prefetch: prefetch_templates(),
            usage_requirements: USAGE,
        },
    ]
}

/// The hook a service id answers, if it is one of ours.
pub fn hook_for(service_id: &str) -> Option<Hook> {
    match service_id {
        ORDER_SELECT_ID => Some(Hook::OrderSelect),
        ORDER_SIGN_ID => Some(Hook::OrderSign),
        _ => None,
    }
}
