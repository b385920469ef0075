//! `GET /openapi.json`: the OpenAPI 3.1 contract of the service's HTTP API — the CDS Hooks
//! services, feedback, study arrivals, the compliance API and the operations endpoints —
//! generated from the handlers' `#[utoipa::path]` attributes and the types they read and write,
//! so it cannot drift from the code. `tests/api/openapi.rs` checks it with
//! openapi-spec-validator and runs schemathesis against the live service with it.
//!
//! The pages (case report, decision log, model card, queue, monitoring) and the sign-in and SMART launch
//! redirects are for browsers, and are not part of the contract.

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "neurocds",
        description = "CDS Hooks 2.0 service for brain MRI orders: estimates glioblastoma (IDH-wildtype) vs primary CNS lymphoma \
from the patient's prior brain MR and advises biopsy, resection planning or tumour-board review. It advises; it never orders."
    ),
    paths(
        crate::cds::discover,
        crate::cds::service::invoke,
        crate::cds::feedback::feedback,
        crate::cds::arrivals::notify,
        super::audit::list,
        super::audit::summary,
        super::queue::api,
        super::monitoring::api,
        super::health::healthz,
        super::health::readyz,
        super::metrics::metrics,
        openapi_json,
    ),
    // Types only parameters name (utoipa registers bodies' types by itself).
    components(schemas(crate::cds::discovery::ServiceId)),
    modifiers(&Security),
    tags(
        (name = "CDS Hooks", description = "Called by the EHR with its signed JWT (`aud` is the endpoint invoked)"),
        (name = "Compliance", description = "The decision log, the queue and model monitoring, for staff (bearer JWT from the hospital's identity provider)"),
        (name = "Operations", description = "Health, readiness, metrics and this document: no token"),
    )
)]
pub struct ApiDoc;

/// The two bearer schemes: the EHR's CDS Hooks JWT and the staff identity provider's.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.bearer_format = Some("JWT".into());
            scheme.description = Some(description.into());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme(
            "ehr_jwt",
            bearer("The EHR's JWT (CDS Hooks 2.0 'Trusting CDS Clients'): ES384/RS384, iss of a trusted client, aud = the URL invoked, a fresh jti"),
        );
        components.add_security_scheme("staff_jwt", bearer("A staff token from the hospital's identity provider, with a role claim"));
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "Operations", responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
