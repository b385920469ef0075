//! The FHIR R4 resources neurocds emits for a decision: a DiagnosticReport with two
//! Observations (the classification, coded, and the probability), a Device for the algorithm and
//! a Provenance naming the device and the input series. All carry `meta.security` AIAST
//! ("Artificial Intelligence asserted") and the profiles in `fhir-profiles/`.
//!
//! Two shapes of the same content:
//! - [`ReportBundle::card_resource`]: one DiagnosticReport with the Observations and Device
//!   contained, for the card's "file the report" suggestion (a single create action);
//! - [`ReportBundle::transaction`]: a transaction Bundle the service can POST to the EHR, with
//!   conditional creates so a retried hook files one report.

use base64::Engine;
use handlebars::Handlebars;
use serde::Serialize;
use serde_json::{Value, json, value::RawValue};
use url::Url;

use super::client::FhirClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{audit::StoredDecision, pipeline::analysis::Analysis};
use neurocds_analysis::decision::{Outcome, Recommendation};

pub const LOINC: &str = "http://loinc.org";

/// Canonical URLs of our profiles (their StructureDefinitions are in `fhir-profiles/`).
pub const PROFILE_REPORT: &str = "https://neurocds.org/fhir/StructureDefinition/neurocds-ai-diagnostic-report";
pub const PROFILE_OBSERVATION: &str = "https://neurocds.org/fhir/StructureDefinition/neurocds-ai-observation";
pub const PROFILE_DEVICE: &str = "https://neurocds.org/fhir/StructureDefinition/neurocds-ai-device";
pub const CS_CLASSIFICATION: &str = "https://neurocds.org/fhir/CodeSystem/lesion-classification";
pub const CS_RECOMMENDATION: &str = "https://neurocds.org/fhir/CodeSystem/recommendation";
pub const ID_DECISION: &str = "https://neurocds.org/fhir/identifier/decision";
pub const ID_HOOK_INSTANCE: &str = "https://neurocds.org/fhir/identifier/hook-instance";
pub const ID_ENSEMBLE: &str = "https://neurocds.org/fhir/identifier/ensemble-sha256";

fn aiast() -> Value {
    json!({ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST", "display": "Artificial Intelligence asserted" })
}

/// The resources for one decision.
#[derive(Debug, Clone, Serialize)]
pub struct ReportBundle {
    pub diagnostic_report: Value,
    pub classification: Value,
    pub probability: Value,
    pub device: Value,
    pub provenance: Value,
}

fn classification(a: &Analysis) -> (&'static str, &'static str) {
    match a.recommendation {
        Some(Recommendation::Biopsy) => ("pcnsl-likely", "Primary CNS lymphoma likely"),
        Some(Recommendation::ResectionPlanning) => ("gbm-likely", "Glioblastoma likely"),
        Some(Recommendation::TumourBoard) => ("indeterminate", "Indeterminate between glioblastoma and primary CNS lymphoma"),
        None => ("no-estimate", "No estimate (the analysis abstained)"),
    }
}

fn recommendation_text(r: Option<Recommendation>) -> &'static str {
    match r {
        Some(Recommendation::Biopsy) => "Stereotactic biopsy before any resection; hold corticosteroids until tissue is obtained if clinically safe.",
        Some(Recommendation::ResectionPlanning) => "Neurosurgical resection planning.",
        Some(Recommendation::TumourBoard) => "Neuro-oncology tumour board review.",
        None => "No recommendation.",
    }
}

/// Builds the resources for an analysis that ran (recommended or abstained with an ensemble
/// result) about `patient_ref`; `None` when there is nothing to report (the analysis could not
/// run).
///
/// What it builds is the analysis's part, the same for every decision on it, and is made once
/// per analysis: [`ReportBundle::stamp`] adds what makes it one decision's report.
pub fn template(a: &Analysis, patient_ref: &str, templates: &Handlebars<'static>) -> Option<ReportBundle> {
    if !matches!(a.outcome, Outcome::Recommended | Outcome::Abstained) || a.ensemble.is_none() && a.outcome == Outcome::Recommended {
        return None;
    }
    let subject = json!({ "reference": patient_ref });
    let (class_code, class_display) = classification(a);
    let meta = |profile: &str| json!({ "profile": [profile], "security": [aiast()] });
    let category = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging", "display": "Imaging" }] }]);
    let derived: Vec<Value> = a.study_reference.iter().map(|r| json!({ "reference": r })).collect();
    let device = json!({
        "resourceType": "Device",
        "id": "algorithm",
        "meta": meta(PROFILE_DEVICE),
        "identifier": [{ "system": ID_ENSEMBLE, "value": a.model.ensemble_sha256 }],
        "status": "active",
        "deviceName": [{ "name": a.model.name, "type": "model-name" }],
        "type": { "text": "AI software: brain lesion classifier (T1 post-contrast + T2 ensemble)" },
        "version": [{ "value": a.model.version }],
        "note": [{ "text": format!("Preprocessing {}; members {}", a.model.preprocessing_version, a.model.member_sha256.join(", ")) }]
    });
    let mut classification = json!({
        "resourceType": "Observation",
        "id": "classification",
        "meta": meta(PROFILE_OBSERVATION),
        "status": "preliminary",
        "category": category,
        "code": { "coding": [{ "system": CS_CLASSIFICATION, "code": "gbm-vs-pcnsl", "display": "AI classification: glioblastoma vs primary CNS lymphoma" }], "text": "AI classification: glioblastoma vs primary CNS lymphoma" },
        "subject": subject,
        "valueCodeableConcept": { "coding": [{ "system": CS_CLASSIFICATION, "code": class_code, "display": class_display }], "text": class_display },
        "device": { "reference": "#algorithm" }
    });
    let mut probability = json!({
        "resourceType": "Observation",
        "id": "probability",
        "meta": meta(PROFILE_OBSERVATION),
        "status": "preliminary",
        "category": category,
        "code": { "coding": [{ "system": CS_CLASSIFICATION, "code": "p-pcnsl", "display": "Calibrated probability of primary CNS lymphoma" }], "text": "Calibrated probability of primary CNS lymphoma" },
        "subject": subject,
        "device": { "reference": "#algorithm" }
    });
    match &a.ensemble {
        Some(e) => {
            probability["valueQuantity"] = json!({ "value": (e.calibrated_probability * 1000.0).round() / 1000.0, "unit": "probability", "system": "http://unitsofmeasure.org", "code": "1" });
            probability["component"] = Value::Array(
                e.member_probabilities
                    .iter()
                    .enumerate()
                    .map(|(i, p)| json!({ "code": { "text": format!("Ensemble member {} probability", i + 1) }, "valueQuantity": { "value": (p * 1000.0).round() / 1000.0, "unit": "probability", "system": "http://unitsofmeasure.org", "code": "1" } }))
                    .collect(),
            );
        }
        None => {
            probability["dataAbsentReason"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed", "display": "Not Performed" }] });
        }
    }
    if !derived.is_empty() {
        classification["derivedFrom"] = json!(derived);
        probability["derivedFrom"] = json!(derived);
    }
    let conclusion = match (&a.ensemble, a.outcome) {
        (Some(e), Outcome::Recommended) => format!("{class_display} (calibrated probability of primary CNS lymphoma {:.0} %). Suggested next step: {}", e.calibrated_probability * 100.0, recommendation_text(a.recommendation)),
        _ => format!("No estimate: {}", a.reason.clone().unwrap_or_default()),
    };
    let series = |s: &Option<crate::pipeline::analysis::UsedSeries>| s.as_ref().map(|s| format!("{} ({})", s.description.clone().unwrap_or_default(), s.series_uid)).unwrap_or_else(|| "—".into());
    let narrative = templates
        .render(
            "report-narrative",
            &json!({
                "study_uid": a.study_uid, "study_started": a.study_started,
                "t1c": series(&a.t1c), "t2": series(&a.t2),
                "probability": a.ensemble.as_ref().map(|e| format!("{:.0} %", e.calibrated_probability * 100.0)).unwrap_or_else(|| "—".into()),
                "members": a.ensemble.as_ref().map(|e| e.member_probabilities.len()).unwrap_or(0),
                "spread": a.ensemble.as_ref().map(|e| format!("{:.2}", e.spread)).unwrap_or_else(|| "—".into()),
                "conclusion": conclusion,
                "model": format!("{} {}", a.model.name, a.model.version),
                "ensemble_sha256": a.model.ensemble_sha256,
                "preprocessing": a.model.preprocessing_version,
            }),
        )
        .unwrap_or_default();
    let mut report = json!({
        "resourceType": "DiagnosticReport",
        "meta": meta(PROFILE_REPORT),
        "status": "preliminary",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology" }] }],
        "code": { "coding": [{ "system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study" }], "text": "AI estimate: glioblastoma vs primary CNS lymphoma" },
        "subject": subject,
        "result": [{ "reference": "#classification" }, { "reference": "#probability" }],
        "conclusion": conclusion,
        "conclusionCode": [{ "coding": [{ "system": CS_CLASSIFICATION, "code": class_code, "display": class_display }] }],
        "presentedForm": [{ "contentType": "text/html", "language": "en", "title": "AI estimate: glioblastoma vs primary CNS lymphoma", "data": base64::engine::general_purpose::STANDARD.encode(narrative.as_bytes()) }]
    });
    if let Some(rec) = a.recommendation {
        report["conclusionCode"].as_array_mut().map(|v| v.push(json!({ "coding": [{ "system": CS_RECOMMENDATION, "code": rec.as_str(), "display": recommendation_text(Some(rec)) }] })));
    }
    if let Some(r) = &a.study_reference {
        report["imagingStudy"] = json!([{ "reference": r }]);
    }
    if let Some(s) = &a.study_started {
        report["effectiveDateTime"] = json!(s);
    }
    let inputs: Vec<Value> = [&a.t1c, &a.t2]
        .into_iter()
        .flatten()
        .map(|s| json!({ "role": "source", "what": { "identifier": { "system": "urn:dicom:uid", "value": format!("urn:oid:{}", s.series_uid) }, "display": s.description.clone().unwrap_or_else(|| "series".into()) } }))
        .collect();
    let provenance = json!({
        "resourceType": "Provenance",
        "meta": { "security": [aiast()] },
        "agent": [{
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler", "display": "Assembler" }] },
            "who": { "identifier": { "system": ID_ENSEMBLE, "value": a.model.ensemble_sha256 }, "display": format!("{} {}", a.model.name, a.model.version) }
        }],
        "entity": inputs
    });
    Some(ReportBundle { diagnostic_report: report, classification, probability, device, provenance })
}

/// What makes a report one decision's: its identifiers, when it was issued (the decision's
/// `recorded_at`), and the orders it answers.
pub struct Stamp<'a> {
    pub decision_id: Uuid,
    pub hook_instance: &'a str,
    pub issued: OffsetDateTime,
    pub order_refs: &'a [String],
}

impl ReportBundle {
    /// A bundle stored with [`into_value`](Self::into_value); `None` when `v` is not one.
    pub fn from_value(v: &Value) -> Option<ReportBundle> {
        let part = |k: &str| v.get(k).filter(|x| x.is_object()).cloned();
        Some(ReportBundle { diagnostic_report: part("diagnostic_report")?, classification: part("classification")?, probability: part("probability")?, device: part("device")?, provenance: part("provenance")? })
    }

    /// The analysis's report ([`template`]) made one decision's: identified by the decision
    /// and the hook instance, issued when the decision was recorded, based on its orders, and
    /// the Provenance targeting it.
    pub fn stamp(mut self, s: &Stamp) -> ReportBundle {
        let issued = s.issued.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let decision = s.decision_id.to_string();
        let report = &mut self.diagnostic_report;
        report["identifier"] = json!([{ "system": ID_DECISION, "value": decision }, { "system": ID_HOOK_INSTANCE, "value": s.hook_instance }]);
        report["issued"] = json!(issued);
        if !s.order_refs.is_empty() {
            report["basedOn"] = Value::Array(s.order_refs.iter().map(|r| json!({ "reference": r })).collect());
        }
        self.classification["issued"] = json!(issued);
        self.probability["issued"] = json!(issued);
        self.provenance["target"] = json!([{ "identifier": { "system": ID_DECISION, "value": decision } }]);
        self.provenance["recorded"] = json!(issued);
        self
    }

    /// The bundle as the audit row stores it: the same JSON as serialising it, built by moving
    /// the resources rather than copying them.
    pub fn into_value(self) -> Value {
        let ReportBundle { diagnostic_report, classification, probability, device, provenance } = self;
        let mut m = serde_json::Map::with_capacity(5);
        m.insert("diagnostic_report".into(), diagnostic_report);
        m.insert("classification".into(), classification);
        m.insert("probability".into(), probability);
        m.insert("device".into(), device);
        m.insert("provenance".into(), provenance);
        Value::Object(m)
    }

    /// The DiagnosticReport with its Observations and Device contained (for a card action).
    pub fn card_resource(&self) -> Value {
        let mut r = self.diagnostic_report.clone();
        r["contained"] = json!([self.classification, self.probability, self.device]);
        r
    }

    /// A transaction Bundle: Device, Observations and DiagnosticReport created once (conditional
    /// on their identifiers), then the Provenance targeting the report.
    pub fn transaction(&self, hook_instance: &str) -> Value {
        let ids = ["urn:uuid:00000000-0000-4000-8000-000000000001", "urn:uuid:00000000-0000-4000-8000-000000000002", "urn:uuid:00000000-0000-4000-8000-000000000003", "urn:uuid:00000000-0000-4000-8000-000000000004"];
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
            }
            v
        };
        let mut device = strip(&self.device);
        let mut class = strip(&self.classification);
        let mut prob = strip(&self.probability);
        class["device"] = json!({ "reference": ids[0] });
        prob["device"] = json!({ "reference": ids[0] });
        for o in [&mut class, &mut prob] {
            o["identifier"] = json!([{ "system": ID_HOOK_INSTANCE, "value": format!("{hook_instance}/{}", o["code"]["coding"][0]["code"].as_str().unwrap_or("obs")) }]);
        }
        let mut report = self.diagnostic_report.clone();
        report["result"] = json!([{ "reference": ids[1] }, { "reference": ids[2] }]);
        let mut provenance = self.provenance.clone();
        provenance["target"] = json!([{ "reference": ids[3] }]);
        provenance["agent"][0]["who"] = json!({ "reference": ids[0] });
        let ensemble = device["identifier"][0]["value"].as_str().unwrap_or_default().to_owned();
        let class_key = class["identifier"][0]["value"].as_str().unwrap_or_default().to_owned();
        let prob_key = prob["identifier"][0]["value"].as_str().unwrap_or_default().to_owned();
        device.as_object_mut().map(|o| o.remove("contained"));
        json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                { "fullUrl": ids[0], "resource": device, "request": { "method": "POST", "url": "Device", "ifNoneExist": format!("identifier={ID_ENSEMBLE}|{ensemble}") } },
                { "fullUrl": ids[1], "resource": class, "request": { "method": "POST", "url": "Observation", "ifNoneExist": format!("identifier={ID_HOOK_INSTANCE}|{class_key}") } },
                { "fullUrl": ids[2], "resource": prob, "request": { "method": "POST", "url": "Observation", "ifNoneExist": format!("identifier={ID_HOOK_INSTANCE}|{prob_key}") } },
                { "fullUrl": ids[3], "resource": report, "request": { "method": "POST", "url": "DiagnosticReport", "ifNoneExist": format!("identifier={ID_HOOK_INSTANCE}|{hook_instance}") } },
                { "resource": provenance, "request": { "method": "POST", "url": "Provenance" } }
            ]
        })
    }
}

/// The report a card offers, serialised once per analysis: each resource's JSON without its
/// closing brace, so that a decision's identifiers are appended as text — no copy of the
/// resources' trees and no re-serialisation per hook. [`CardReport::stamped`] is, as JSON, what
/// `template.stamp(s).card_resource()` gives (a test holds them equal).
#[derive(Debug)]
pub struct CardReport {
    report: String,
    classification: String,
    probability: String,
    device: String,
}

/// The fields [`ReportBundle::stamp`] and [`ReportBundle::card_resource`] add; a template must
/// not carry them already.
const STAMPED: [&str; 4] = ["identifier", "issued", "basedOn", "contained"];

impl CardReport {
    /// From a [`template`]; `None` when a resource is not a non-empty object or already carries
    /// a stamped field.
    pub fn new(template: &ReportBundle) -> Option<CardReport> {
        let open = |v: &Value| -> Option<String> {
            let o = v.as_object().filter(|o| !o.is_empty() && !STAMPED.iter().any(|k| o.contains_key(*k)))?;
            let mut json = serde_json::to_string(o).ok()?;
            json.pop(); // the closing brace
            Some(json)
        };
        Some(CardReport {
            report: open(&template.diagnostic_report)?,
            classification: open(&template.classification)?,
            probability: open(&template.probability)?,
            device: serde_json::to_string(&template.device).ok()?,
        })
    }

    /// The DiagnosticReport with its Observations and Device contained, stamped for one
    /// decision.
    pub fn stamped(&self, s: &Stamp) -> Option<Box<RawValue>> {
        let issued = serde_json::to_string(&s.issued.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()).ok()?;
        let identifier = serde_json::to_string(&json!([{ "system": ID_DECISION, "value": s.decision_id.to_string() }, { "system": ID_HOOK_INSTANCE, "value": s.hook_instance }])).ok()?;
        let based_on = (!s.order_refs.is_empty()).then(|| serde_json::to_string(&Value::Array(s.order_refs.iter().map(|r| json!({ "reference": r })).collect())));
        let mut out = String::with_capacity(self.report.len() + self.classification.len() + self.probability.len() + self.device.len() + identifier.len() + 256);
        out.push_str(&self.report);
        out.push_str(",\"identifier\":");
        out.push_str(&identifier);
        out.push_str(",\"issued\":");
        out.push_str(&issued);
        if let Some(based_on) = based_on {
            out.push_str(",\"basedOn\":");
            out.push_str(&based_on.ok()?);
        }
        out.push_str(",\"contained\":[");
        for observation in [&self.classification, &self.probability] {
            out.push_str(observation);
            out.push_str(",\"issued\":");
            out.push_str(&issued);
            out.push_str("},");
        }
        out.push_str(&self.device);
        out.push_str("]}");
        RawValue::from_string(out).ok()
    }
}

/// Puts a decision's own report back as the card carried it: a row that names a shared content
/// holds the analysis's template after [`crate::audit::Database::attach_contents`]; this stamps
/// it with the row's identifiers. Rows recorded inline are left as they are.
pub fn stamp_stored(row: &mut StoredDecision) {
    let r = &mut row.record;
    if r.content_sha256.is_none() {
        return;
    }
    let Some(template) = r.report.as_ref().and_then(ReportBundle::from_value) else { return };
    let order_refs: Vec<String> = serde_json::from_value(r.order_refs.clone()).unwrap_or_default();
    let stamped = template.stamp(&Stamp { decision_id: r.decision_id, hook_instance: &r.hook_instance, issued: r.recorded_at, order_refs: &order_refs });
    r.report = Some(stamped.into_value());
}

/// Files the report on the EHR's FHIR server after the hook has been answered. The token lives
/// only in this task's memory until the request is sent.
pub fn write_in_background(fhir: FhirClient, base: Url, bundle: ReportBundle, hook_instance: String, token: Option<String>, runtime: tokio::runtime::Handle) {
    runtime.spawn(async move {
        let tx = bundle.transaction(&hook_instance);
        match fhir.transaction(&base, &tx, token.as_deref()).await {
            Ok(()) => tracing::info!(hook_instance, "DiagnosticReport filed on the FHIR server"),
            Err(e) => tracing::warn!(hook_instance, error = %e, "could not file the DiagnosticReport"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_value_is_the_serialised_bundle() {
        let bundle = ReportBundle {
            diagnostic_report: json!({"resourceType": "DiagnosticReport", "status": "preliminary"}),
            classification: json!({"id": "classification"}),
            probability: json!({"id": "probability", "valueQuantity": {"value": 0.125}}),
            device: json!({"id": "algorithm"}),
            provenance: json!({"resourceType": "Provenance"}),
        };
        assert_eq!(serde_json::to_value(&bundle).unwrap(), bundle.clone().into_value());
        assert_eq!(ReportBundle::from_value(&bundle.clone().into_value()).map(ReportBundle::into_value), Some(bundle.into_value()), "and reads back");
    }

    #[test]
    fn a_stamp_makes_the_template_one_decisions_report() {
        let template = ReportBundle {
            diagnostic_report: json!({"resourceType": "DiagnosticReport"}),
            classification: json!({"id": "classification"}),
            probability: json!({"id": "probability"}),
            device: json!({"id": "algorithm"}),
            provenance: json!({"resourceType": "Provenance"}),
        };
        let orders = ["ServiceRequest/o1".to_owned()];
        let id = Uuid::from_u128(42);
        let issued = OffsetDateTime::UNIX_EPOCH;
        let r = template.stamp(&Stamp { decision_id: id, hook_instance: "h-1", issued, order_refs: &orders });
        assert_eq!(r.diagnostic_report["identifier"][0], json!({"system": ID_DECISION, "value": id.to_string()}));
        assert_eq!(r.diagnostic_report["identifier"][1], json!({"system": ID_HOOK_INSTANCE, "value": "h-1"}));
        assert_eq!(r.diagnostic_report["basedOn"], json!([{"reference": "ServiceRequest/o1"}]));
        for issued in [&r.diagnostic_report["issued"], &r.classification["issued"], &r.probability["issued"], &r.provenance["recorded"]] {
            assert_eq!(issued, "1970-01-01T00:00:00Z");
        }
        assert_eq!(r.provenance["target"][0]["identifier"]["value"], id.to_string());
    }

    #[test]
    fn the_pre_serialised_card_report_is_the_stamped_templates_card_resource() {
        let template = ReportBundle {
            diagnostic_report: json!({"resourceType": "DiagnosticReport", "conclusion": "x \"quoted\" é", "result": [{"reference": "#classification"}]}),
            classification: json!({"resourceType": "Observation", "id": "classification", "valueQuantity": {"value": 0.125}}),
            probability: json!({"resourceType": "Observation", "id": "probability"}),
            device: json!({"resourceType": "Device", "id": "algorithm"}),
            provenance: json!({"resourceType": "Provenance"}),
        };
        let card = CardReport::new(&template).expect("a template");
        for orders in [vec![], vec!["ServiceRequest/o1".to_owned(), "ServiceRequest/o2".to_owned()]] {
            let stamp = Stamp { decision_id: Uuid::from_u128(7), hook_instance: "h \"1\"", issued: OffsetDateTime::UNIX_EPOCH, order_refs: &orders };
            let raw = card.stamped(&stamp).expect("valid JSON");
            let parsed: Value = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(parsed, template.clone().stamp(&stamp).card_resource(), "orders {orders:?}");
        }
    }

    #[test]
    fn a_template_that_already_carries_a_stamped_field_is_not_pre_serialised() {
        let with = |report: Value| ReportBundle { diagnostic_report: report, classification: json!({"id": "c"}), probability: json!({"id": "p"}), device: json!({"id": "d"}), provenance: json!({}) };
        assert!(CardReport::new(&with(json!({"resourceType": "DiagnosticReport"}))).is_some());
        assert!(CardReport::new(&with(json!({"resourceType": "DiagnosticReport", "issued": "2026"}))).is_none());
        assert!(CardReport::new(&with(json!({}))).is_none());
    }
}
