//! `POST /cds-services/{id}`: one hook invocation, from JWT to cards.
//!
//! 1. trust the caller (JWT) → 401;
//! 2. parse the request → 400; unknown service → 404;
//! 3. no brain MRI among the (selected) draft orders → `{"cards": []}` at once;
//! 4. prefetch, or fetch what is missing → 412;
//! 5. choose the prior study; request its analysis (shared, run once) → 503 when overloaded;
//! 6. order-select answers at once; order-sign waits up to its budget;
//! 7. record the decision in the audit log; answer with the card (none in silent mode).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json, value::RawValue};
use time::OffsetDateTime;
use uuid::Uuid;

use neurocds_analysis::decision::Outcome;

use super::{
    card::{self, Card, CardContext},
    discovery,
    hook::{Hook, HookRequest},
    outcome::CdsError,
    prefetch,
};
use crate::{
    audit::{DecisionContent, DecisionRecord, records::now_micros},
    config::{OrderSelectAnswer, OutOfScopeAnswer},
    fhir::{report, study::choose_prior_study},
    pipeline::{PipelineError, analysis::Analysis},
    queue::Priority,
    state::AppState,
};

/// Verifies the caller's JWT for `endpoint`; logs why it failed (never the token). With
/// `trust.shared_replay_check`, the token's id must also be new to every replica.
pub async fn trust(req: &HttpRequest, state: &AppState, endpoint: &str) -> Result<super::auth::VerifiedClient, CdsError> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client = state.verifier.verify(header, endpoint).await.map_err(|e| {
        tracing::warn!(reason = %e, issuer = e.issuer().unwrap_or("-"), "refused a CDS client token");
        CdsError::Unauthorized
    })?;
    if state.settings.trust.shared_replay_check {
        match state.db.first_use_of_token(&client.iss, &client.jti, client.valid_until).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(issuer = %client.iss, "refused a CDS client token: its jti was already accepted (by this or another replica)");
                return Err(CdsError::Unauthorized);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the shared token replay check is unavailable");
                return Err(CdsError::Overloaded("the token replay check is unavailable; try again shortly".into()));
            }
        }
    }
    Ok(client)
}

/// The CDS Hooks response body: `{"cards": [...]}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Cards {
    cards: Vec<Card>,
}

fn cards(cards: Vec<Card>) -> HttpResponse {
    HttpResponse::Ok().json(Cards { cards })
}

/// A hook: order-select or order-sign on a brain MRI order. Answers the analysis's card (or none:
/// the order is not a brain MRI, or the study is out of scope and the site silences those).
#[utoipa::path(post, path = "/cds-services/{id}", tag = "CDS Hooks", security(("ehr_jwt" = [])),
    params(("id" = super::discovery::ServiceId, Path, description = "A service id from `GET /cds-services`")),
    request_body(content = super::hook::RawRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Cards; an empty list when there is nothing to advise", body = Cards),
        (status = 400, description = "Malformed body or a field the hook needs is missing or wrong; the OperationOutcome names it", body = crate::cds::outcome::OperationOutcome),
        (status = 401, description = "No JWT, or one this service does not trust for this endpoint (no detail is given)", body = crate::cds::outcome::OperationOutcome),
        (status = 404, description = "No such service", body = super::outcome::OperationOutcome),
        (status = 412, description = "The data the hook needs was neither prefetched nor fetchable from `fhirServer`", body = super::outcome::OperationOutcome),
        (status = 413, description = "The body is over `server.max_request_bytes`", content_type = "text/plain"),
        (status = 503, description = "Too many analyses queued, or the audit trail is unavailable (nothing is answered that is not recorded); `Retry-After` says when to try again", body = crate::cds::outcome::OperationOutcome),
    ))]
pub async fn invoke(req: HttpRequest, path: web::Path<String>, body: web::Bytes, state: web::Data<AppState>) -> Result<HttpResponse, CdsError> {
    let service_id = path.into_inner();
    let answered = answer(&req, &service_id, body, &state).await;
    // A hook refused before it was answered (bad token, malformed request, no prefetch, full,
    // audit trail down) is counted by why. Only our own service ids become labels.
    if let (Err(e), Some(hook)) = (&answered, discovery::hook_for(&service_id)) {
        state.metrics.hook(&service_id, hook.as_str(), e.metric_outcome(), false);
    }
    answered
}

async fn answer(req: &HttpRequest, service_id: &str, body: web::Bytes, state: &AppState) -> Result<HttpResponse, CdsError> {
    let started = Instant::now();
    let service_id = service_id.to_owned();
    let endpoint = format!("{}/{}", state.settings.cds_services_url(), service_id);
    let client = trust(&req, &state, &endpoint).await?;
    let hook = discovery::hook_for(&service_id).ok_or_else(|| CdsError::UnknownService(service_id.clone()))?;
    let id = service_id.clone();
    let parsed = crate::offload::parse_off_runtime(body, move |body| HookRequest::parse(body, &id, hook)).await;
    let request = parsed.map_err(|e| CdsError::Overloaded(e.to_string()))??;
    let orders: Vec<&Value> = request.orders.iter().filter(|o| state.brain_mri_codes.matches(o)).collect();
    let counted = |outcome: &str, card_shown: bool| state.metrics.hook(&service_id, hook.as_str(), outcome, card_shown);
    if orders.is_empty() {
        counted("not-brain-mri", false);
        return Ok(cards(Vec::new()));
    }
    let order_refs: Vec<String> = orders.iter().filter_map(|o| o.get("id").and_then(Value::as_str)).map(|id| format!("ServiceRequest/{id}")).collect();
    tracing::info!(hook = hook.as_str(), hook_instance = %request.hook_instance, orders = order_refs.len(), "brain MRI order");

    // Only a FHIR server on this client's list is ever asked (or written to).
    let fhir_access = match &request.fhir_server {
        None => prefetch::FhirAccess::NotGiven,
        Some(url) => match state.egress.fhir_server(&client.iss, url) {
            Ok(()) => prefetch::FhirAccess::Allowed(url),
            Err(refusal) => {
                tracing::warn!(issuer = %client.iss, %refusal, "refused the hook's fhirServer (egress policy)");
                prefetch::FhirAccess::Refused
            }
        },
    };
    let prefetched = prefetch::resolve(&request, &state.fhir, fhir_access).await.map_err(|e| {
        tracing::warn!(error = %e, "prefetch unavailable");
        CdsError::PreconditionFailed(e.to_string())
    })?;
    let mut record = DecisionRecord {
        decision_id: Uuid::new_v4(),
        recorded_at: now_micros(),
        hook: hook.as_str().into(),
        hook_instance: request.hook_instance.clone(),
        service_id: service_id.clone(),
        client_iss: client.iss.clone(),
        user_ref: Some(request.user_id.clone()),
        patient_ref: request.patient_ref(),
        order_refs: json!(order_refs),
        study_uid: None,
        series: json!([]),
        model_version: None,
        member_hashes: json!([]),
        preprocessing_version: None,
        member_probabilities: json!([]),
        ensemble_probability: None,
        calibrated_probability: None,
        member_spread: None,
        recommendation: None,
        outcome: Outcome::Unavailable.as_str().into(),
        silent: client.silent,
        reason: None,
        card_uuid: None,
        stage_timings_ms: json!({}),
        report: None,
        content_sha256: None,
        trace_id: crate::telemetry::traces::current_trace_id(),
    };
    let default_dicomweb = Some(state.settings.dicomweb.default_base_url.as_str());
    let study = match choose_prior_study(&prefetched.imaging, &request.patient_ref(), OffsetDateTime::now_utc(), state.settings.imaging.lookback_days, default_dicomweb) {
        Ok(s) => s,
        Err(e) => {
            // Nothing to analyse is a normal state (first scan): audited, no card.
            record.reason = Some(e.to_string());
            record.stage_timings_ms = json!({ "hook": started.elapsed().as_millis() as u64 });
            state.db.append_decision(record).await.map_err(|e| CdsError::AuditUnavailable(e.to_string()))?;
            counted("no-prior-study", false);
            return Ok(cards(Vec::new()));
        }
    };
    record.study_uid = Some(study.study_uid.clone());
    // Pixels come only from where this client's studies may point: otherwise audited, no card.
    if let Err(refusal) = state.egress.study(&client.iss, &study) {
        tracing::warn!(issuer = %client.iss, %refusal, "refused the prior study's DICOMweb endpoint (egress policy)");
        record.reason = Some(refusal.to_string());
        record.stage_timings_ms = json!({ "hook": started.elapsed().as_millis() as u64 });
        state.db.append_decision(record).await.map_err(|e| CdsError::AuditUnavailable(e.to_string()))?;
        counted("egress-refused", false);
        return Ok(cards(Vec::new()));
    }
    // Results are shared only within one client (and tenant): what another caller's prefetch
    // pointed at never decides this answer.
    let client_key = client.analysis_owner();
    // A clinician signing waits for it; order-select only warms it up.
    let priority = match hook {
        Hook::OrderSelect => Priority::WarmUp,
        Hook::OrderSign => Priority::Waiting,
    };
    let ticket = match state.pipeline.request(&client_key, &request.patient_ref(), &study, priority).await {
        Ok(t) => t,
        Err(e) => {
            record.reason = Some(e.to_string());
            let _ = state.db.append_decision(record).await;
            return Err(match e {
                PipelineError::Overloaded(_) => CdsError::Overloaded(e.to_string()),
                PipelineError::Audit(a) => CdsError::AuditUnavailable(a.to_string()),
            });
        }
    };
    let budget = match hook {
        Hook::OrderSelect => Duration::ZERO,
        Hook::OrderSign => Duration::from_millis(state.settings.hooks.order_sign_budget_ms).saturating_sub(started.elapsed()),
    };
    let analysis = state.pipeline.wait(ticket, budget).await;
    let card_uuid = Uuid::new_v4();
    let mut filing = None;
    let mut content = None;
    let card = match &analysis {
        Some(a) => {
            fill_record(&mut record, a);
            // What every decision on this analysis shares is built, hashed and serialised once;
            // this decision's report is that template stamped with its own identifiers.
            let shared = a.shared.get_or_init(|| Shared::of(a, &record.patient_ref, &state.pages)).unwrap_or_else(|| Arc::new(Shared::of(a, &record.patient_ref, &state.pages)));
            let stamp = report::Stamp { decision_id: record.decision_id, hook_instance: &request.hook_instance, issued: record.recorded_at, order_refs: &order_refs };
            let card_resource = shared.card_report.as_ref().and_then(|r| r.stamped(&stamp));
            // The FHIR server gets the report only when reports are filed.
            if state.settings.fhir.write_reports && !client.silent {
                filing = shared.content.value().get("report").and_then(report::ReportBundle::from_value).map(|t| t.stamp(&stamp));
            }
            content = Some(shared.content.clone());
            let ctx = card_context(&state, &record, &request, &order_refs, card_uuid, card_resource.as_deref());
            let shown = a.outcome != Outcome::OutOfScope || state.settings.hooks.out_of_scope_answer == OutOfScopeAnswer::InfoCard;
            shown.then(|| card::card_for(a, &ctx))
        }
        None if hook == Hook::OrderSelect => {
            record.outcome = Outcome::Pending.as_str().into();
            (state.settings.hooks.order_select_answer == OrderSelectAnswer::InfoCard).then(|| card::running_card(&card_context(&state, &record, &request, &order_refs, card_uuid, None)))
        }
        None => {
            record.outcome = Outcome::Unavailable.as_str().into();
            record.reason = Some(format!("the analysis did not finish within the {} ms order-sign budget", state.settings.hooks.order_sign_budget_ms));
            let pending = Analysis::pending_placeholder(&study, record.reason.clone());
            Some(card::card_for(&pending, &card_context(&state, &record, &request, &order_refs, card_uuid, None)))
        }
    };
    // Silent mode: analyse and audit, but show nothing.
    let card = if client.silent { None } else { card };
    record.card_uuid = card.as_ref().map(|_| card_uuid);
    if let Some(obj) = record.stage_timings_ms.as_object_mut() {
        obj.insert("hook".into(), json!(started.elapsed().as_millis() as u64));
    }
    let (outcome, decision_id) = (record.outcome.clone(), record.decision_id);
    // The audit row names the shared content its report was stamped from.
    let appended = match content {
        Some(content) => state.db.append_decision_with(record, content).await,
        None => state.db.append_decision(record).await,
    };
    appended.map_err(|e| CdsError::AuditUnavailable(e.to_string()))?;
    if let (Some(bundle), prefetch::FhirAccess::Allowed(base)) = (filing, fhir_access) {
        let base = base.clone();
        let token = request.fhir_authorization.as_ref().map(|a| a.access_token.clone());
        report::write_in_background(state.fhir.clone(), base, bundle, request.hook_instance.clone(), token, state.runtime.clone());
    }
    counted(&outcome, card.is_some());
    tracing::info!(%outcome, %decision_id, elapsed_ms = started.elapsed().as_millis() as u64, "hook answered");
    Ok(cards(card.into_iter().collect()))
}

fn card_context<'a>(state: &'a AppState, record: &DecisionRecord, request: &'a HookRequest, order_refs: &'a [String], card_uuid: Uuid, report: Option<&'a RawValue>) -> CardContext<'a> {
    CardContext {
        card_uuid,
        decision_id: record.decision_id,
        public_base_url: state.settings.server.public_base_url.as_str(),
        patient_ref: request.patient_ref_str(),
        order_refs,
        templates: &state.templates,
        report,
        smart_launch: state.launcher.registered(&record.client_iss),
    }
}

/// What the hooks on one analysis share, made once and kept on it ([`Analysis::shared`]).
struct Shared {
    /// Stored once in the audit trail and named by every decision: the series used and every
    /// verdict, the scope gate's answer with every lesion candidate, the report before its
    /// per-decision identifiers, and what model monitoring watches.
    content: Arc<DecisionContent>,
    /// That report, serialised for cards (`None` when there is no report).
    card_report: Option<report::CardReport>,
}

impl Shared {
    fn of(a: &Analysis, patient_ref: &str, templates: &handlebars::Handlebars<'static>) -> Shared {
        let mut series = json!({ "t1c": a.t1c, "t2": a.t2, "verdicts": a.series_verdicts });
        if let (Some(scope), Some(s)) = (&a.scope, series.as_object_mut()) {
            // The scope gate's answer and every lesion candidate, with the series they were found on.
            s.insert("lesion_candidates".into(), json!(scope));
        }
        let template = report::template(a, patient_ref, templates);
        let card_report = template.as_ref().and_then(report::CardReport::new);
        let report = template.map(report::ReportBundle::into_value);
        // What model monitoring reads back (`audit::monitoring`): the inputs and the reason class.
        let monitoring = json!({ "inputs": a.inputs, "reason_class": a.reason_class() });
        Shared { content: Arc::new(DecisionContent::new(json!({ "series": series, "report": report, "monitoring": monitoring }))), card_report }
    }
}

/// Copies an analysis into the decision row (what only this decision holds; the rest is the
/// shared content).
fn fill_record(record: &mut DecisionRecord, a: &Analysis) {
    record.model_version = Some(format!("{}@{}", a.model.name, a.model.version));
    record.member_hashes = json!(a.model.member_sha256);
    record.preprocessing_version = Some(a.model.preprocessing_version.clone());
    if let Some(e) = &a.ensemble {
        record.member_probabilities = json!(e.member_probabilities);
        record.ensemble_probability = Some(e.mean_probability);
        record.calibrated_probability = Some(e.calibrated_probability);
        record.member_spread = Some(e.spread);
    }
    record.recommendation = a.recommendation.map(|r| r.as_str().to_owned());
    record.outcome = a.outcome.as_str().into();
    record.reason = a.reason.clone();
    record.stage_timings_ms = json!(a.stage_timings_ms);
}
