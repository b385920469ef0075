//! What people and operators reach over HTTP besides the CDS Hooks API: liveness and readiness,
//! the compliance API, and the server-rendered pages.

pub mod health;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz)).route("/readyz", web::get().to(health::readyz));
}
