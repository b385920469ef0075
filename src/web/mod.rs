//! What people and operators reach over HTTP besides the CDS Hooks API: liveness and readiness,
//! the compliance API, and the server-rendered pages (case report, decision log, model card).

pub mod audit;
pub mod health;
pub mod metrics;
pub mod model_card;
pub mod pages;
pub mod staff;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/audit/decisions", web::get().to(audit::list))
        .route("/audit/summary", web::get().to(audit::summary))
        .route("/audit", web::get().to(pages::audit))
        .route("/reports/{id}", web::get().to(pages::report))
        .route("/models", web::get().to(pages::models))
        .route("/login", web::get().to(pages::login_form))
        .route("/login", web::post().to(pages::login));
}
