//! The CDS Hooks 2.0 protocol: discovery, hook invocation, prefetch, JWT trust, cards, feedback;
//! and, with the same trust, the study-arrival notification that warms the queue ([`arrivals`]).
//!
//! This layer parses what the EHR sends into typed requests, checks who sent it, and turns the
//! pipeline's decision into cards. It never touches pixels or tensors.

pub mod arrivals;
pub mod auth;
pub mod card;
pub mod discovery;
pub mod feedback;
pub mod hook;
pub mod outcome;
pub mod prefetch;
pub mod service;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/cds-services", web::get().to(discover))
        .route("/cds-services/{id}", web::post().to(service::invoke))
        .route("/cds-services/{id}/feedback", web::post().to(feedback::feedback))
        .route(arrivals::PATH, web::post().to(arrivals::notify));
}

/// `GET /cds-services`. Requires the EHR's JWT like every other CDS endpoint.
#[utoipa::path(get, path = "/cds-services", tag = "CDS Hooks", security(("ehr_jwt" = [])),
    responses(
        (status = 200, description = "The services neurocds offers and what each asks the EHR to prefetch", body = discovery::Services),
        (status = 401, description = "No JWT, or one this service does not trust for this endpoint (no detail is given)", body = outcome::OperationOutcome),
    ))]
pub(crate) async fn discover(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, outcome::CdsError> {
    service::trust(&req, &state, &state.settings.cds_services_url()).await?;
    Ok(HttpResponse::Ok().json(discovery::Services { services: discovery::services() }))
}
