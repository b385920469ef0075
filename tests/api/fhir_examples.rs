//! `fhir-profiles/examples/`: instances of our profiles as the service emits them for a real
//! decision (a synthetic lymphoma-like study through Orthanc, the FHIR server and the shipped
//! ensemble). The checked-in examples must still have the shape and the codes the service emits
//! today (identifiers, times, probabilities and hashes may differ), and be valid R4 — the same
//! three checks as the end-to-end test: the official JSON Schema, fhir.resources 6.4.0 and our
//! StructureDefinitions.
//!
//! Regenerate them (then commit):
//! `NEUROCDS_WRITE_FHIR_EXAMPLES=1 cargo test --release --locked --test api -- fhir_profile_examples`

use std::{collections::BTreeSet, path::PathBuf};

use serde_json::{Value, json};

use crate::{
    e2e::{load, pick, sign_for, validate},
    helpers::{TestApp, spawn_app_with},
    hooks::decisions,
};

const SIGN: &str = "neurocds-brain-mri-order-sign";

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fhir-profiles/examples")
}

/// The example files, from one decision: the DiagnosticReport as the card offers it (Observations
/// and Device contained), and the transaction the service files on the EHR's FHIR server, whole
/// and split into one file per resource (references between them are the bundle's `urn:uuid`s).
fn emitted(card_resource: Value, transaction: &Value) -> Vec<(String, Value)> {
    let mut files = vec![("DiagnosticReport-card.json".to_owned(), card_resource), ("Bundle-transaction.json".to_owned(), transaction.clone())];
    for entry in transaction["entry"].as_array().into_iter().flatten() {
        let r = &entry["resource"];
        let kind = r["resourceType"].as_str().unwrap_or("Resource");
        let name = match r["code"]["coding"][0]["code"].as_str() {
            Some("gbm-vs-pcnsl") => format!("{kind}-classification.json"),
            Some("p-pcnsl") => format!("{kind}-probability.json"),
            _ => format!("{kind}.json"),
        };
        files.push((name, r.clone()));
    }
    files
}

/// What must not drift: every path with its JSON type, every coding (system|code) with its path,
/// and the resource types, statuses and profiles. Values that change per decision (ids, times,
/// probabilities, hashes, the estimate's own codes) are left out.
fn fingerprint(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                out.insert(format!("{path}: object"));
                if let (Some(system), Some(code)) = (o.get("system").and_then(Value::as_str), o.get("code").and_then(Value::as_str)) {
                    // The estimate itself (pcnsl-likely, biopsy…) is the decision's, not the shape's.
                    let result = path.contains(".valueCodeableConcept") || path.contains(".conclusionCode");
                    out.insert(format!("{path} = {system}|{}", if result { "*" } else { code }));
                }
                for key in ["resourceType", "status"] {
                    if let Some(s) = o.get(key).and_then(Value::as_str) {
                        out.insert(format!("{path}.{key} = {s}"));
                    }
                }
                for (k, x) in o {
                    walk(x, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(a) => {
                out.insert(format!("{path}: array"));
                for x in a {
                    walk(x, &format!("{path}[]"), out);
                }
            }
            Value::String(s) if path.ends_with(".meta.profile[]") => {
                out.insert(format!("{path} = {s}"));
            }
            leaf => {
                let kind = match leaf {
                    Value::String(_) => "string",
                    Value::Number(_) => "number",
                    Value::Bool(_) => "boolean",
                    _ => "null",
                };
                out.insert(format!("{path}: {kind}"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// Every `meta.profile` claimed anywhere in `v` (contained resources and bundle entries too).
fn profiles_claimed(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for p in o.get("meta").and_then(|m| m["profile"].as_array()).into_iter().flatten() {
                out.insert(p.as_str().unwrap_or_default().to_owned());
            }
            o.values().for_each(|x| profiles_claimed(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| profiles_claimed(x, out)),
        _ => {}
    }
}

/// FHIR's habit, for people reading the files: `resourceType` first (the stored report comes back
/// from PostgreSQL's JSONB with its keys reordered).
fn resource_type_first(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let (first, rest): (Vec<_>, Vec<_>) = o.into_iter().partition(|(k, _)| k == "resourceType");
            Value::Object(first.into_iter().chain(rest).map(|(k, x)| (k, resource_type_first(x))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(resource_type_first).collect()),
        other => other,
    }
}

async fn app() -> TestApp {
    spawn_app_with(json!({ "model": { "manifest": "models/ensemble/manifest.json" }, "hooks": { "order_sign_budget_ms": 120000 } })).await
}

#[tokio::test]
async fn fhir_profile_examples_match_what_the_service_emits_and_are_valid_r4() {
    let app = app().await;
    // The lymphoma-like study the end-to-end test also signs (it asserts that one is advised biopsy).
    let row = pick("pcnsl", "solid", 0);
    let patient = tokio::task::spawn_blocking(move || load(&row)).await.expect("loading the study");
    let body = sign_for(&patient);
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!(status, 200, "{resp}");
    let decision = decisions(&app).await.into_iter().find(|d| d.record.patient_ref == format!("Patient/{patient}")).expect("the decision");
    assert_eq!(decision.record.outcome, "recommended", "{:?}", decision.record.reason);
    let card_resource = resp["cards"][0]["suggestions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["actions"].as_array().into_iter().flatten())
        .find(|a| a["resource"]["resourceType"] == "DiagnosticReport")
        .map(|a| a["resource"].clone())
        .expect("the card offers the DiagnosticReport");
    let stored = decision.record.report.clone().expect("the decision stored its report");
    let bundle = neurocds::fhir::report::ReportBundle {
        diagnostic_report: stored["diagnostic_report"].clone(),
        classification: stored["classification"].clone(),
        probability: stored["probability"].clone(),
        device: stored["device"].clone(),
        provenance: stored["provenance"].clone(),
    };
    let files = emitted(card_resource, &bundle.transaction(&decision.record.hook_instance));

    let dir = examples_dir();
    if std::env::var_os("NEUROCDS_WRITE_FHIR_EXAMPLES").is_some() {
        std::fs::create_dir_all(&dir).expect("create fhir-profiles/examples");
        for (name, resource) in &files {
            let text = serde_json::to_string_pretty(&resource_type_first(resource.clone())).expect("JSON") + "\n";
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
    }

    let regenerate = "regenerate with NEUROCDS_WRITE_FHIR_EXAMPLES=1 (see fhir-profiles/README.md)";
    let mut checked_in = Vec::new();
    for (name, resource) in &files {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; {regenerate}", path.display()));
        let example: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let (now, then) = (fingerprint(resource), fingerprint(&example));
        let missing: Vec<_> = now.difference(&then).collect();
        let stale: Vec<_> = then.difference(&now).collect();
        assert!(missing.is_empty() && stale.is_empty(), "{name} is stale; {regenerate}\n  the service now emits: {missing:#?}\n  only the example has: {stale:#?}");
        checked_in.push(example);
    }
    // No example the service no longer writes.
    let names: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    for entry in std::fs::read_dir(&dir).expect("fhir-profiles/examples").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".json") || names.contains(&name), "{name} is not an example the service writes; {regenerate}");
    }

    let mut claimed = BTreeSet::new();
    checked_in.iter().for_each(|e| profiles_claimed(e, &mut claimed));
    for profile in [neurocds::fhir::report::PROFILE_REPORT, neurocds::fhir::report::PROFILE_OBSERVATION, neurocds::fhir::report::PROFILE_DEVICE] {
        assert!(claimed.contains(profile), "no example of {profile}");
    }
    validate(&checked_in);
}

/// The profile check is not a formality: a report that breaks the profile is refused, naming why.
#[test]
fn the_profile_check_refuses_a_report_that_breaks_the_profile() {
    let path = examples_dir().join("DiagnosticReport-card.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut report: Value = serde_json::from_str(&text).expect("JSON");
    report["status"] = json!("final");
    report["result"] = json!([report["result"][0].clone()]);
    let file = std::env::temp_dir().join(format!("neurocds-fhir-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, report.to_string()).expect("write a temp file");
    let out = std::process::Command::new(crate::helpers::python().join("tools-venv/bin/python"))
        .args(["scripts/validate_fhir.py", "profile"])
        .arg(&file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run validate_fhir.py");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("DiagnosticReport.status: must be 'preliminary'"), "{said}");
    assert!(said.contains("DiagnosticReport.result: 1 value(s), the profile wants at least 2"), "{said}");
}
