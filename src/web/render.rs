//! Rendering a staff page: the template, and who is signed in for the header.

use actix_web::HttpResponse;
use serde_json::{Value, json};

use super::staff::StaffUser;
use crate::state::AppState;

/// Renders a page; `viewer` (who is signed in) fills the header's name and sign-out form.
pub fn page(state: &AppState, name: &str, viewer: Option<&StaffUser>, mut data: Value) -> HttpResponse {
    if let (Some(v), Some(map)) = (viewer, data.as_object_mut()) {
        map.insert("viewer".into(), json!({ "name": v.name.as_deref().unwrap_or(&v.subject), "role": v.role.as_str(), "csrf": v.csrf }));
    }
    match state.pages.render(name, &data) {
        Ok(html) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html),
        Err(e) => {
            tracing::error!(template = name, error = %e, "cannot render a page");
            HttpResponse::InternalServerError().content_type("text/plain").body("the page could not be rendered")
        }
    }
}

