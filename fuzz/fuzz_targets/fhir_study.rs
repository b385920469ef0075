//! FHIR resources from prefetch or the EHR's FHIR server (ImagingStudy, Endpoint, anything
//! else) read into the prior study to analyse: subject, identifiers, dates, series, endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neurocds::fhir::study::choose_prior_study;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(resources)) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = time::macros::datetime!(2026-12-01 12:00 UTC);
    let _ = choose_prior_study(&resources, "Patient/p1", now, 3650, None);
    let _ = choose_prior_study(&resources, "Patient/p1", now, 3650, Some("http://pacs.fuzz/dicom-web"));
});
