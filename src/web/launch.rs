//! The SMART EHR launch in the browser: the card's `smart` link opens `GET /launch?iss&launch`,
//! the EHR's authorization server answers at `GET /launch/callback`, and the browser lands on
//! the case report the card's `appContext` names — only when the launch's patient is that
//! decision's patient and the launching EHR is the one that asked for it.
//!
//! The grant is kept in the session ([`LaunchGrant`]): it opens that one case report, for
//! [`GRANT_LIFETIME_S`], and nothing else (a clinician holds no staff role).

use actix_session::SessionExt;
use actix_web::{HttpRequest, HttpResponse, http::{StatusCode, header}, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{
    render::page,
    signin::{constant_time_eq, now},
    smart::{Launched, PendingLaunch},
};
use crate::{cds::card::decision_in, state::AppState};

const PENDING: &str = "launch-pending";
const GRANT: &str = "launch";
/// How long a launch opens its case report.
pub const GRANT_LIFETIME_S: i64 = 3600;
/// How long a launch may take at the EHR's authorization server.
const PENDING_LIFETIME_S: i64 = 600;

/// What a completed launch lets this browser see.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchGrant {
    pub decision_id: Uuid,
    pub fhir_user: Option<String>,
    pub expires_at: i64,
}

fn failed(state: &AppState, status: StatusCode, why: &str) -> HttpResponse {
    let mut r = page(state, "signin-failed", None, json!({ "why": why, "launch": true }));
    *r.status_mut() = status;
    r
}

/// The launch grant this browser holds for `decision`, if any (and not expired).
pub fn grant_for(req: &HttpRequest, decision: Uuid) -> Option<LaunchGrant> {
    let grant = req.get_session().get::<LaunchGrant>(GRANT).ok().flatten()?;
    (grant.decision_id == decision && grant.expires_at > now()).then_some(grant)
}

#[derive(Deserialize)]
pub struct LaunchQuery {
    iss: Option<String>,
    launch: Option<String>,
}

/// `GET /launch`: the EHR launched us; off to its authorization server.
pub async fn launch(req: HttpRequest, q: web::Query<LaunchQuery>, state: web::Data<AppState>) -> HttpResponse {
    let (Some(iss), Some(launch)) = (q.iss.as_deref(), q.launch.as_deref()) else {
        return failed(&state, StatusCode::BAD_REQUEST, "This page opens from the EHR (a SMART launch needs `iss` and `launch`).");
    };
    match state.launcher.begin(iss, launch, now()).await {
        Ok((url, pending)) => {
            if req.get_session().insert(PENDING, &pending).is_err() {
                return failed(&state, StatusCode::INTERNAL_SERVER_ERROR, "The launch could not be started.");
            }
            HttpResponse::SeeOther().insert_header((header::LOCATION, url.as_str())).finish()
        }
        Err(e) => {
            tracing::warn!(reason = %e, "refused a SMART launch");
            failed(&state, StatusCode::BAD_REQUEST, "neurocds cannot be launched from here: this EHR is not registered with it, or its sign-in service cannot be reached.")
        }
    }
}

#[derive(Deserialize)]
pub struct LaunchCallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /launch/callback`: the EHR's authorization server answered. The begun launch is taken
/// out of the session first, so a code or state is used at most once.
pub async fn callback(req: HttpRequest, q: web::Query<LaunchCallbackQuery>, state: web::Data<AppState>) -> HttpResponse {
    let session = req.get_session();
    let pending = session.remove_as::<PendingLaunch>(PENDING).and_then(Result::ok);
    if q.error.is_some() {
        return failed(&state, StatusCode::UNAUTHORIZED, "The EHR did not authorize the launch.");
    }
    let (Some(pending), Some(code), Some(returned)) = (pending, q.code.clone(), q.state.as_deref()) else {
        return failed(&state, StatusCode::BAD_REQUEST, "This launch was not started in this browser, or it was already used. Open the case report from the EHR again.");
    };
    if !constant_time_eq(pending.state.as_bytes(), returned.as_bytes()) || now() - pending.started_at > PENDING_LIFETIME_S {
        return failed(&state, StatusCode::BAD_REQUEST, "This launch was not started in this browser, or it was already used. Open the case report from the EHR again.");
    }
    let launched = match state.launcher.finish(&pending, code).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(reason = %e, "refused a SMART launch");
            return failed(&state, StatusCode::UNAUTHORIZED, "The launch could not be verified. Open the case report from the EHR again.");
        }
    };
    let Some(decision_id) = launched.app_context.as_deref().and_then(decision_in) else {
        return failed(&state, StatusCode::BAD_REQUEST, "The EHR launched neurocds without naming a case report.");
    };
    match state.db.decision(decision_id).await {
        Ok(Some(d)) if launch_matches(&launched, &d.record.client_iss, &d.record.patient_ref) => {}
        Ok(_) => {
            tracing::warn!("refused a SMART launch for a case report of another patient or EHR");
            let mut r = page(&state, "forbidden", None, json!({ "why": "This case report is not about the patient the EHR opened it for." }));
            *r.status_mut() = StatusCode::FORBIDDEN;
            return r;
        }
        Err(e) => return failed(&state, StatusCode::SERVICE_UNAVAILABLE, &format!("The audit trail is unavailable: {e}")),
    }
    session.renew();
    let grant = LaunchGrant { decision_id, fhir_user: launched.fhir_user, expires_at: now() + GRANT_LIFETIME_S };
    if session.insert(GRANT, &grant).is_err() {
        return failed(&state, StatusCode::INTERNAL_SERVER_ERROR, "The launch could not be kept.");
    }
    HttpResponse::SeeOther().insert_header((header::LOCATION, format!("/reports/{decision_id}"))).finish()
}

/// The launch is for this decision's patient, from the EHR whose hook made it.
fn launch_matches(launched: &Launched, client_iss: &str, patient_ref: &str) -> bool {
    let patient = patient_ref.strip_prefix("Patient/").unwrap_or(patient_ref);
    launched.client_iss == client_iss && launched.patient.strip_prefix("Patient/").unwrap_or(&launched.patient) == patient
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launched(client: &str, patient: &str) -> Launched {
        Launched { client_iss: client.into(), patient: patient.into(), app_context: None, fhir_user: None }
    }

    #[test]
    fn a_launch_opens_only_its_own_patients_decision_from_its_own_ehr() {
        assert!(launch_matches(&launched("ehr-a", "p1"), "ehr-a", "Patient/p1"));
        assert!(launch_matches(&launched("ehr-a", "Patient/p1"), "ehr-a", "Patient/p1"));
        assert!(!launch_matches(&launched("ehr-a", "p2"), "ehr-a", "Patient/p1"), "another patient");
        assert!(!launch_matches(&launched("ehr-b", "p1"), "ehr-a", "Patient/p1"), "another EHR's patient p1");
        assert!(!launch_matches(&launched("ehr-a", "p"), "ehr-a", "Patient/p1"));
    }
}
