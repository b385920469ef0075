//! The EHR's FHIR server: reading Patient, ImagingStudy and Endpoint (R4 JSON, read with
//! fhir-sdk's R4B models), and the resources neurocds emits (DiagnosticReport, Observation,
//! Device, Provenance).
