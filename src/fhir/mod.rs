//! The EHR's FHIR server: reading Patient, ImagingStudy and Endpoint (R4 JSON, read with
//! fhir-sdk's R4B models, which parse R4 for these resources), and the resources neurocds emits
//! (DiagnosticReport, Observation, Device, Provenance).
//!
//! Requests to the EHR go through [`client::FhirClient`], a thin reqwest client that sends
//! `Accept: application/fhir+json` without a `fhirVersion` parameter: fhir-sdk's own client
//! would send `fhirVersion=4.3`, which strict R4 servers refuse (406/415).

pub mod client;
pub mod report;
pub mod study;
