//! Cards exactly as CDS Hooks 2.0 shapes them (§Card Attributes), built from an analysis.
//!
//! No optional field is ever sent null or empty (requirement 3): empty lists and absent values
//! are skipped when serialising.

use handlebars::Handlebars;
use serde::Serialize;
use serde_json::{Value, json, value::RawValue};
use uuid::Uuid;

use neurocds_analysis::decision::{Outcome, Recommendation};

use crate::pipeline::analysis::Analysis;

/// `info` < `warning` < `critical`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Indicator {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Coding {
    pub system: String,
    pub code: String,
    pub display: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Source {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<Coding>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: String,
    /// The FHIR resource, serialised (the report's is stamped from pre-serialised parts).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub resource: Option<Box<RawValue>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub label: String,
    pub uuid: String,
    pub is_recommended: bool,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub label: String,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_context: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub uuid: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub indicator: Indicator,
    pub source: Source,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection_behavior: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub override_reasons: Vec<Coding>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
}

/// Everything a card needs besides the analysis.
pub struct CardContext<'a> {
    pub card_uuid: Uuid,
    pub decision_id: Uuid,
    pub public_base_url: &'a str,
    pub patient_ref: &'a str,
    pub order_refs: &'a [String],
    pub templates: &'a Handlebars<'static>,
    /// The DiagnosticReport the card offers to file, when there is one.
    pub report: Option<&'a RawValue>,
    /// The calling EHR launches neurocds as a SMART app: link the report as a launch.
    pub smart_launch: bool,
}

/// Summary lengths are counted in characters; the spec asks for fewer than 140.
const MAX_SUMMARY: usize = 139;

fn truncate(s: String) -> String {
    if s.chars().count() <= MAX_SUMMARY {
        return s;
    }
    let mut t: String = s.chars().take(MAX_SUMMARY - 1).collect();
    t.push('…');
    t
}

fn code_system(base: &str, name: &str) -> String {
    format!("{}/fhir/CodeSystem/{name}", base.trim_end_matches('/'))
}

fn source(base: &str) -> Source {
    Source {
        label: "neurocds brain-lesion AI (T1c + T2 ensemble)".into(),
        url: Some(format!("{}/models", base.trim_end_matches('/'))),
        topic: Some(Coding { system: code_system(base, "topic"), code: "gbm-vs-pcnsl".into(), display: "Glioblastoma vs primary CNS lymphoma".into() }),
    }
}

/// The case report: a SMART launch (`/launch`, the decision in `appContext`) for an EHR that
/// registered neurocds as a SMART app, the page itself (staff sign-in) otherwise.
fn report_link(ctx: &CardContext) -> Link {
    let base = ctx.public_base_url.trim_end_matches('/');
    let label = "Case report: inputs, key images, ensemble and model card".into();
    if ctx.smart_launch {
        Link { label, url: format!("{base}/launch"), kind: "smart", app_context: Some(app_context_for(ctx.decision_id)) }
    } else {
        Link { label, url: format!("{base}/reports/{}", ctx.decision_id), kind: "absolute", app_context: None }
    }
}

/// The `appContext` of a card's SMART link: the decision it is about.
pub fn app_context_for(decision: Uuid) -> String {
    serde_json::json!({ "decision": decision }).to_string()
}

/// The decision an `appContext` names, if it is one of ours.
pub fn decision_in(app_context: &str) -> Option<Uuid> {
    let v: serde_json::Value = serde_json::from_str(app_context).ok()?;
    Uuid::parse_str(v.get("decision")?.as_str()?).ok()
}

pub fn override_reasons(base: &str) -> Vec<Coding> {
    [
        ("tissue-diagnosis-planned", "Tissue diagnosis is already planned or available"),
        ("clinical-picture-differs", "The clinical picture points elsewhere"),
        ("image-quality", "The prior MR is not representative (quality, timing or steroids given)"),
        ("patient-preference", "Patient or family preference"),
        ("other", "Other reason"),
    ]
    .into_iter()
    .map(|(code, display)| Coding { system: code_system(base, "override-reason"), code: code.into(), display: display.into() })
    .collect()
}

/// A proposal the clinician may accept into the order basket: a draft ServiceRequest.
fn proposed_order(ctx: &CardContext, text: &str, snomed: Option<(&str, &str)>) -> Value {
    let mut code = json!({ "text": text });
    if let Some((c, d)) = snomed {
        code["coding"] = json!([{ "system": "http://snomed.info/sct", "code": c, "display": d }]);
    }
    let mut sr = json!({
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": code,
        "subject": { "reference": ctx.patient_ref },
        "note": [{ "text": "Proposed by neurocds brain-lesion AI; advisory, for clinician review." }]
    });
    if !ctx.order_refs.is_empty() {
        sr["reasonReference"] = Value::Array(ctx.order_refs.iter().map(|r| json!({ "reference": r })).collect());
    }
    sr
}

fn suggestions(rec: Recommendation, ctx: &CardContext) -> Vec<Suggestion> {
    let (label, text, snomed) = match rec {
        Recommendation::Biopsy => ("Request stereotactic brain biopsy", "Stereotactic biopsy of brain lesion", None),
        Recommendation::ResectionPlanning => ("Refer to neurosurgery for resection planning", "Referral to neurosurgery: resection planning for brain lesion", Some(("183545006", "Referral to neurosurgeon"))),
        Recommendation::TumourBoard => ("Refer to the neuro-oncology tumour board", "Neuro-oncology tumour board review", None),
    };
    let mut out = vec![Suggestion {
        label: label.into(),
        uuid: Uuid::new_v4().to_string(),
        is_recommended: true,
        actions: vec![Action { kind: "create", description: format!("Add a draft order: {text}"), resource: serde_json::value::to_raw_value(&proposed_order(ctx, text, snomed)).ok() }],
    }];
    if let Some(report) = ctx.report {
        out.push(Suggestion {
            label: "File the AI report (preliminary) to the chart".into(),
            uuid: Uuid::new_v4().to_string(),
            is_recommended: false,
            actions: vec![Action { kind: "create", description: "Create a preliminary DiagnosticReport with the AI estimate".into(), resource: Some(report.to_owned()) }],
        });
    }
    out
}

fn pct(p: f64) -> String {
    format!("{:.0}", (p * 100.0).clamp(0.0, 100.0))
}

/// The card for a finished analysis; `None` when there is nothing a clinician should see.
pub fn card_for(analysis: &Analysis, ctx: &CardContext) -> Card {
    let base = ctx.public_base_url;
    match (analysis.outcome, analysis.recommendation, analysis.ensemble.as_ref()) {
        (Outcome::Recommended, Some(rec), Some(ens)) => {
            let summary = truncate(format!("AI: {} (P lymphoma {} %)", rec.headline(), pct(ens.calibrated_probability)));
            let lo = ens.member_probabilities.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = ens.member_probabilities.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let series = |s: &Option<crate::pipeline::analysis::UsedSeries>| {
                s.as_ref().map(|s| clean(s.description.as_deref().unwrap_or(&s.series_uid))).unwrap_or_else(|| "—".into())
            };
            let data = json!({
                "study_date": analysis.study_started.as_deref().map(|d| d.get(..10).unwrap_or(d)).unwrap_or("unknown date"),
                "model_name": analysis.model.name, "model_version": analysis.model.version,
                "probability_pct": pct(ens.calibrated_probability),
                "members": ens.member_probabilities.len(),
                "member_range": format!("{}–{} %", pct(lo), pct(hi)),
                "spread": format!("{:.2}", ens.spread),
                "t1c": series(&analysis.t1c), "t2": series(&analysis.t2),
                "biopsy": rec == Recommendation::Biopsy,
                "resection": rec == Recommendation::ResectionPlanning,
                "tumour_board": rec == Recommendation::TumourBoard,
            });
            let detail = ctx.templates.render("card-detail", &data).ok();
            Card {
                uuid: ctx.card_uuid.to_string(),
                summary,
                detail,
                indicator: if rec == Recommendation::Biopsy { Indicator::Warning } else { Indicator::Info },
                source: source(base),
                suggestions: suggestions(rec, ctx),
                selection_behavior: Some("at-most-one"),
                override_reasons: override_reasons(base),
                links: vec![report_link(ctx)],
            }
        }
        (Outcome::OutOfScope, _, _) => {
            let why = analysis
                .scope
                .as_ref()
                .and_then(|s| s.out_of_scope)
                .map(|r| r.explanation().to_owned())
                .unwrap_or_else(|| "no enhancing intra-axial mass was found".into());
            Card {
                uuid: ctx.card_uuid.to_string(),
                summary: truncate(format!("Brain-lesion AI: not applicable to this study ({why})")),
                detail: Some(format!(
                    "The AI estimate of glioblastoma vs primary CNS lymphoma applies only to an enhancing intra-axial mass. \
                     In the prior brain MR, {why}.\n\nNo estimate and no recommendation are made; decide as you would without it. \
                     The case report lists every enhancing structure that was considered and why it was set aside."
                )),
                indicator: Indicator::Info,
                source: source(base),
                suggestions: Vec::new(),
                selection_behavior: None,
                override_reasons: Vec::new(),
                links: vec![report_link(ctx)],
            }
        }
        _ => {
            // An abstention's reason is clinical (members disagree, the lesion leaves the imaged
            // volume) and is shown. A failure's is technical (URLs, status codes, parser errors):
            // the card says which step failed in words a clinician can act on, and the
            // technical reason stays in the decision log and the case report, for staff.
            let reason = match analysis.outcome {
                Outcome::Unavailable => unavailable_because(analysis.failed_stage.as_deref()).to_owned(),
                _ => analysis.reason.clone().unwrap_or_else(|| "the analysis did not complete".into()),
            };
            let verb = if analysis.outcome == Outcome::Abstained { "declined to estimate" } else { "is unavailable" };
            Card {
                uuid: ctx.card_uuid.to_string(),
                summary: truncate(format!("Brain-lesion AI {verb}: {}", plain_line(&reason))),
                detail: Some(format!(
                    "The AI estimate of glioblastoma vs primary CNS lymphoma {verb} for this order.\n\n**Why:** {}\n\nNo recommendation is made; decide as you would without it. The case report holds the details.",
                    markdown_text(&reason)
                )),
                indicator: Indicator::Info,
                source: source(base),
                suggestions: Vec::new(),
                selection_behavior: None,
                override_reasons: Vec::new(),
                links: vec![report_link(ctx)],
            }
        }
    }
}

/// Why an analysis is unavailable, by the stage that failed, for the card.
fn unavailable_because(stage: Option<&str>) -> &'static str {
    match stage {
        Some("series_metadata" | "retrieval") => "the prior MR could not be retrieved from the image archive (PACS)",
        Some("assembly") => "the prior MR's images could not be assembled into volumes",
        Some("preprocessing") => "the prior MR's images could not be prepared for the model",
        Some("inference") => "the model could not run just now",
        Some("time-budget") => "the analysis did not finish within this order's time budget; it goes on, and a later order will show its result",
        _ => "the analysis did not finish",
    }
}

/// The info card order-select may show while the analysis runs (`hooks.order_select_answer`).
pub fn running_card(ctx: &CardContext) -> Card {
    Card {
        uuid: ctx.card_uuid.to_string(),
        summary: "Brain-lesion AI: analysing the prior brain MR; the estimate will show when the order is signed".into(),
        detail: None,
        indicator: Indicator::Info,
        source: source(ctx.public_base_url),
        suggestions: Vec::new(),
        selection_behavior: None,
        override_reasons: Vec::new(),
        links: Vec::new(),
    }
}

/// Text from outside (DICOM series descriptions) goes into Markdown: drop what could make a
/// link, an image or HTML.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '[' | ']' | '(' | ')' | '<' | '>' | '!' | '`' | '*' | '_' | '|')).take(80).collect()
}

/// Text that came from outside (UIDs, content types, URLs, a PACS's error text) as one line of
/// literal Markdown: every character Markdown or HTML would interpret is escaped, so a caller
/// cannot put links, images or markup into a card.
pub fn markdown_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in plain_line(s).chars() {
        if "\\`*_{}[]()<>#+-.!|~&".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One line without control characters (for the plain-text summary).
pub fn plain_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_controlled_text_cannot_put_markup_into_a_card() {
        let md = markdown_text("series missing: [click](http://evil.example) <img src=x>\n# Title");
        assert!(md.contains(r"\[click\]\(http://evil\.example\)"), "{md}");
        assert!(md.contains(r"\<img src=x\>") && md.contains(r"\# Title") && !md.contains('\n'), "{md}");
        assert_eq!(plain_line("a\nb\tc"), "a b c");
    }

    #[test]
    fn the_case_report_link_is_a_smart_launch_naming_the_decision_for_an_ehr_registered_for_it() {
        let templates = Handlebars::new();
        let decision_id = Uuid::new_v4();
        let ctx = |smart_launch| CardContext {
            card_uuid: Uuid::new_v4(),
            decision_id,
            public_base_url: "https://neurocds.example.org/",
            patient_ref: "Patient/p1",
            order_refs: &[],
            templates: &templates,
            report: None,
            smart_launch,
        };
        let smart = report_link(&ctx(true));
        assert_eq!((smart.kind, smart.url.as_str()), ("smart", "https://neurocds.example.org/launch"));
        assert_eq!(smart.app_context.as_deref().and_then(decision_in), Some(decision_id));
        let page = report_link(&ctx(false));
        assert_eq!((page.kind, page.url), ("absolute", format!("https://neurocds.example.org/reports/{decision_id}")));
        assert!(page.app_context.is_none(), "appContext is for smart links only");
    }

    #[test]
    fn a_smart_links_app_context_names_its_decision_and_nothing_else_reads_as_one() {
        let id = Uuid::new_v4();
        assert_eq!(decision_in(&app_context_for(id)), Some(id));
        for other in ["{\"decision\":\"not-a-uuid\"}", "not json", "{}", "[]"] {
            assert_eq!(decision_in(other), None, "{other}");
        }
    }
}
