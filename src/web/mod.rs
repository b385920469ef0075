//! What people and operators reach over HTTP besides the CDS Hooks API: liveness and readiness,
//! the compliance API, the server-rendered pages (case report, decision log, model card, analysis queue, model monitoring), and
//! staff sign-in.

pub mod audit;
pub mod health;
pub mod launch;
pub mod metrics;
pub mod model_card;
pub mod monitoring;
pub mod openapi;
pub mod pages;
pub mod queue;
pub mod refusal;
pub mod render;
pub mod roles;
pub mod signin;
pub mod smart;
pub mod sso;
pub mod staff;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/openapi.json", web::get().to(openapi::openapi_json))
        .route("/audit/decisions", web::get().to(audit::list))
        .route("/audit/summary", web::get().to(audit::summary))
        .route("/audit", web::get().to(pages::audit))
        .route("/reports/{id}", web::get().to(pages::report))
        .route("/models", web::get().to(pages::models))
        .route("/queue", web::get().to(queue::page_view))
        .route("/audit/queue", web::get().to(queue::api))
        .route("/monitoring", web::get().to(monitoring::page_view))
        .route("/audit/monitoring", web::get().to(monitoring::api))
        .route("/login", web::get().to(signin::login))
        .route("/login", web::post().to(pages::login))
        .route(sso::CALLBACK_PATH, web::get().to(signin::callback))
        .route("/logout", web::post().to(signin::logout))
        .route("/launch", web::get().to(launch::launch))
        .route(smart::LAUNCH_CALLBACK_PATH, web::get().to(launch::callback));
}
