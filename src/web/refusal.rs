//! What a staff route answers someone it does not serve: machine clients get an
//! OperationOutcome (401 or 403); browsers are sent to sign in (and brought back), or shown the
//! 403 page that says why.

use actix_web::{HttpRequest, HttpResponse, http::{StatusCode, header}};
use serde_json::json;

use super::{render::page, staff::StaffAuthError};
use crate::{cds::outcome::operation_outcome, state::AppState};

/// The compliance API's refusal.
pub fn deny(e: StaffAuthError) -> HttpResponse {
    tracing::warn!(reason = %e, "refused a staff request");
    let status = if matches!(e, StaffAuthError::NoRole | StaffAuthError::NotAllowed { .. }) { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
    HttpResponse::build(status).insert_header(("WWW-Authenticate", "Bearer")).json(operation_outcome("security", if status == StatusCode::FORBIDDEN { "forbidden" } else { "unauthorized" }))
}

/// Pages send people who are not signed in (or whose sign-in expired) to sign in, and bring
/// them back to the page they asked for; people whose role does not open a page get the 403
/// page. Other clients get the compliance API's OperationOutcome.
pub fn signin_or_deny(req: &HttpRequest, state: &AppState, e: StaffAuthError) -> HttpResponse {
    let browser = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if !browser {
        return deny(e);
    }
    match e {
        StaffAuthError::Missing | StaffAuthError::SessionExpired => {
            let here = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/audit");
            let to = format!("/login?{}", url::form_urlencoded::Serializer::new(String::new()).append_pair("return_to", here).finish());
            HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
        }
        StaffAuthError::NoRole | StaffAuthError::NotAllowed { .. } => {
            tracing::warn!(reason = %e, "refused a staff page");
            let why = match &e {
                StaffAuthError::NotAllowed { role, view } => format!("Your role ({}) does not open {view}.", role.as_str()),
                _ => "You are signed in, but your account has no neurocds role (compliance or neuro-oncology).".to_owned(),
            };
            let mut r = page(state, "forbidden", None, json!({ "why": why }));
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        }
        other => deny(other),
    }
}

