//! Which prior study to analyse, and where its pixels are.
//!
//! From the ImagingStudies (and included Endpoints) the EHR prefetched or we fetched: the most
//! recent MR study of the brain or head within the look-back, its Study Instance UID from
//! `identifier` (`urn:dicom:uid`, value `urn:oid:<uid>`), and its DICOMweb location:
//! `series.endpoint` over `ImagingStudy.endpoint` over the configured default.

use std::collections::HashMap;

use fhir_sdk::{
    DateTime,
    r4b::{
        resources::{Endpoint, ImagingStudy},
        types::Coding,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// The study neurocds will analyse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriorStudy {
    /// `ImagingStudy/{id}` when the resource has an id.
    pub reference: Option<String>,
    pub study_uid: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    pub description: Option<String>,
    /// DICOMweb base (or full study URL) for the whole study.
    pub dicomweb: Option<String>,
    /// Per series UID, a series-level endpoint that overrides the study's.
    pub series_dicomweb: HashMap<String, String>,
}

impl PriorStudy {
    /// Where to fetch a series from: its own endpoint, else the study's.
    pub fn dicomweb_for(&self, series_uid: &str) -> Option<&str> {
        self.series_dicomweb.get(series_uid).map(String::as_str).or(self.dicomweb.as_deref())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StudyChoiceError {
    #[error("no prior brain MR study within the last {days} days")]
    NoPriorBrainMr { days: i64 },
    #[error("the most recent brain MR (ImagingStudy/{0}) has no DICOM Study Instance UID")]
    NoStudyUid(String),
    #[error("no DICOMweb endpoint for the prior study (none on the ImagingStudy, none configured)")]
    NoEndpoint,
    #[error("{0} brain MR ImagingStudy resource(s) offered for this patient name another patient as their subject (or none); none was used")]
    OtherPatient(usize),
}

const SNOMED: &str = "http://snomed.info/sct";
/// SNOMED CT body structures that mean brain or head.
const BRAIN_OR_HEAD: [&str; 3] = ["12738006", "69536005", "180924008"];
const BRAIN_WORDS: [&str; 6] = ["brain", "head", "neuro", "cereb", "cranial", "skull"];

/// Chooses the study of `patient_ref` (`Patient/<id>`, the hook's `context.patientId`) from
/// FHIR resources (ImagingStudy and Endpoint, as in a searchset Bundle's entries). Resources
/// that do not parse as R4 ImagingStudy are skipped (and logged by id); so is a study whose
/// `subject` is not that patient: a prefetch or a FHIR server never decides whose pixels are
/// read.
pub fn choose_prior_study(resources: &[Value], patient_ref: &str, now: OffsetDateTime, lookback_days: i64, default_dicomweb: Option<&str>) -> Result<PriorStudy, StudyChoiceError> {
    let endpoints: HashMap<String, String> = resources
        .iter()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Endpoint"))
        .filter_map(|r| Endpoint::deserialize(r).ok())
        .filter(|e| e.connection_type.code.as_deref() == Some("dicom-wado-rs"))
        .filter_map(|e| Some((format!("Endpoint/{}", e.id.clone()?), e.address.clone())))
        .collect();
    let oldest = now - time::Duration::days(lookback_days);
    let mut other_patient = 0usize;
    let mut candidates: Vec<(Option<OffsetDateTime>, ImagingStudy)> = resources
        .iter()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("ImagingStudy"))
        .filter_map(|r| match ImagingStudy::deserialize(r) {
            Ok(s) => Some(s),
            Err(e) => {
                let id = r.get("id").and_then(Value::as_str).unwrap_or("?");
                tracing::warn!(id, error = %e, "skipping an ImagingStudy that is not valid R4");
                None
            }
        })
        .filter(|s| is_mr(s) && is_brain_or_head(s))
        .filter(|s| {
            let theirs = s.subject.reference.as_deref().is_some_and(|r| r == patient_ref || r.ends_with(&format!("/{patient_ref}")));
            if !theirs {
                other_patient += 1;
            }
            theirs
        })
        .map(|s| (started(&s), s))
        .filter(|(t, _)| t.is_none_or(|t| t >= oldest && t <= now + time::Duration::days(1)))
        .collect();
    // Most recent first; a study without a start date sorts last.
    candidates.sort_by(|a, b| b.0.cmp(&a.0));
    if other_patient > 0 {
        tracing::warn!(skipped = other_patient, "brain MR ImagingStudy resources whose subject is not the hook's patient were ignored");
    }
    let Some((started, study)) = candidates.into_iter().next() else {
        return Err(if other_patient > 0 { StudyChoiceError::OtherPatient(other_patient) } else { StudyChoiceError::NoPriorBrainMr { days: lookback_days } });
    };
    let id = study.id.clone().unwrap_or_default();
    let study_uid = study_instance_uid(&study).ok_or_else(|| StudyChoiceError::NoStudyUid(id.clone()))?;
    let resolve = |refs: &[Option<fhir_sdk::r4b::types::Reference>]| -> Option<String> {
        refs.iter().flatten().filter_map(|r| r.reference.as_ref()).find_map(|r| endpoints.get(r).cloned())
    };
    let dicomweb = resolve(&study.endpoint).or_else(|| default_dicomweb.filter(|s| !s.is_empty()).map(str::to_owned));
    let series_dicomweb: HashMap<String, String> = study
        .series
        .iter()
        .flatten()
        .filter_map(|s| Some((s.uid.clone(), resolve(&s.endpoint)?)))
        .collect();
    if dicomweb.is_none() && series_dicomweb.is_empty() {
        return Err(StudyChoiceError::NoEndpoint);
    }
    Ok(PriorStudy {
        reference: study.id.as_ref().map(|i| format!("ImagingStudy/{i}")),
        study_uid,
        started,
        description: study.description.clone(),
        dicomweb,
        series_dicomweb,
    })
}

fn is_mr(s: &ImagingStudy) -> bool {
    let mr = |c: &Coding| c.code.as_deref() == Some("MR");
    s.modality.iter().flatten().any(mr) || s.series.iter().flatten().any(|se| mr(&se.modality))
}

fn is_brain_or_head(s: &ImagingStudy) -> bool {
    let words = |t: &str| {
        let t = t.to_lowercase();
        BRAIN_WORDS.iter().any(|w| t.contains(w))
    };
    let coded = |c: &Coding| c.system.as_deref() == Some(SNOMED) && c.code.as_deref().is_some_and(|k| BRAIN_OR_HEAD.contains(&k));
    s.description.as_deref().is_some_and(words)
        || s.procedure_code.iter().flatten().any(|cc| cc.text.as_deref().is_some_and(words) || cc.coding.iter().flatten().any(|c| c.display.as_deref().is_some_and(words)))
        || s.series.iter().flatten().any(|se| se.body_site.as_ref().is_some_and(coded) || se.description.as_deref().is_some_and(words))
}

fn started(s: &ImagingStudy) -> Option<OffsetDateTime> {
    match s.started.as_ref()? {
        DateTime::DateTime(i) => Some(i.0),
        DateTime::Date(fhir_sdk::Date::Date(d)) => Some(d.midnight().assume_utc()),
        DateTime::Date(_) => None,
    }
}

/// `identifier` with system `urn:dicom:uid` and value `urn:oid:1.2.3…` → `1.2.3…`.
pub fn study_instance_uid(s: &ImagingStudy) -> Option<String> {
    s.identifier
        .iter()
        .flatten()
        .filter(|i| i.system.as_deref() == Some("urn:dicom:uid"))
        .filter_map(|i| i.value.as_deref())
        .map(|v| v.strip_prefix("urn:oid:").unwrap_or(v).to_owned())
        .find(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn study(id: &str, uid: &str, started: &str, desc: &str, endpoint: Option<&str>) -> Value {
        let mut s = json!({
            "resourceType": "ImagingStudy", "id": id, "status": "available",
            "subject": {"reference": "Patient/p1"},
            "identifier": [{"system": "urn:dicom:uid", "value": format!("urn:oid:{uid}")}],
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
            "started": started, "description": desc
        });
        if let Some(e) = endpoint {
            s["endpoint"] = json!([{"reference": e}]);
        }
        s
    }

    fn endpoint(id: &str, address: &str) -> Value {
        json!({"resourceType": "Endpoint", "id": id, "status": "active",
               "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs"},
               "payloadType": [{"text": "DICOM"}], "address": address})
    }

    #[test]
    fn the_most_recent_brain_mr_within_the_lookback_is_chosen_with_its_endpoint() {
        let r = vec![
            study("old", "1.2.3", "2025-01-01T10:00:00Z", "MR BRAIN W WO", Some("Endpoint/pacs")),
            study("new", "1.2.4", "2026-10-01T10:00:00Z", "MRI Head with contrast", Some("Endpoint/pacs")),
            study("knee", "1.2.5", "2026-11-01T10:00:00Z", "MR KNEE", Some("Endpoint/pacs")),
            endpoint("pacs", "https://pacs.example.org/dicom-web"),
        ];
        let chosen = choose_prior_study(&r, "Patient/p1", NOW, 730, None).unwrap();
        assert_eq!(chosen.study_uid, "1.2.4");
        assert_eq!(chosen.reference.as_deref(), Some("ImagingStudy/new"));
        assert_eq!(chosen.dicomweb.as_deref(), Some("https://pacs.example.org/dicom-web"));
    }

    #[test]
    fn studies_older_than_the_lookback_are_not_used() {
        let r = vec![study("old", "1.2.3", "2020-01-01T10:00:00Z", "MR BRAIN", None)];
        assert_eq!(choose_prior_study(&r, "Patient/p1", NOW, 365, Some("http://pacs/dicom-web")), Err(StudyChoiceError::NoPriorBrainMr { days: 365 }));
    }

    #[test]
    fn without_any_endpoint_the_configured_default_is_used_and_without_one_it_is_an_error() {
        let r = vec![study("s", "1.2.3", "2026-10-01T10:00:00Z", "MR BRAIN", None)];
        assert_eq!(choose_prior_study(&r, "Patient/p1", NOW, 730, Some("http://pacs/dicom-web")).unwrap().dicomweb.as_deref(), Some("http://pacs/dicom-web"));
        assert_eq!(choose_prior_study(&r, "Patient/p1", NOW, 730, None), Err(StudyChoiceError::NoEndpoint));
    }

    #[test]
    fn a_series_endpoint_overrides_the_study_endpoint() {
        let mut s = study("s", "1.2.3", "2026-10-01T10:00:00Z", "MR BRAIN", Some("Endpoint/a"));
        s["series"] = json!([{"uid": "1.2.3.1", "modality": {"code": "MR"}, "endpoint": [{"reference": "Endpoint/b"}]}]);
        let r = vec![s, endpoint("a", "http://a/dicom-web"), endpoint("b", "http://b/dicom-web")];
        let chosen = choose_prior_study(&r, "Patient/p1", NOW, 730, None).unwrap();
        assert_eq!(chosen.dicomweb_for("1.2.3.1"), Some("http://b/dicom-web"));
        assert_eq!(chosen.dicomweb_for("1.2.3.9"), Some("http://a/dicom-web"));
    }

    #[test]
    fn a_study_without_a_dicom_uid_is_refused_with_its_id() {
        let mut s = study("s", "1.2.3", "2026-10-01T10:00:00Z", "MR BRAIN", None);
        s["identifier"] = json!([{"system": "urn:ietf:rfc:3986", "value": "x"}]);
        assert_eq!(choose_prior_study(&[s], "Patient/p1", NOW, 730, Some("http://p")), Err(StudyChoiceError::NoStudyUid("s".into())));
    }

    #[test]
    fn a_study_whose_subject_is_another_patient_is_never_used() {
        let mut theirs = study("s2", "1.2.9", "2026-06-01T10:00:00Z", "MR Brain", Some("Endpoint/pacs"));
        theirs["subject"]["reference"] = json!("Patient/someone-else");
        let r = [theirs.clone(), endpoint("pacs", "http://pacs/dicom-web")];
        assert_eq!(choose_prior_study(&r, "Patient/p1", NOW, 730, None), Err(StudyChoiceError::OtherPatient(1)));
        let ours = study("s1", "1.2.3", "2025-06-01T10:00:00Z", "MR Brain", Some("Endpoint/pacs"));
        let r = [theirs, ours, endpoint("pacs", "http://pacs/dicom-web")];
        assert_eq!(choose_prior_study(&r, "Patient/p1", NOW, 730, None).unwrap().study_uid, "1.2.3", "the older study that is the patient's own");
        let absolute = {
            let mut s = study("s3", "1.2.4", "2026-06-01T10:00:00Z", "MR Brain", Some("Endpoint/pacs"));
            s["subject"]["reference"] = json!("https://ehr.example/fhir/Patient/p1");
            s
        };
        assert_eq!(choose_prior_study(&[absolute, endpoint("pacs", "http://pacs/dicom-web")], "Patient/p1", NOW, 730, None).unwrap().study_uid, "1.2.4");
    }
}