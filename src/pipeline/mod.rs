//! The decision: from a brain-MRI order to a recommendation, orchestrating fhir → dicomweb →
//! imaging → inference → audit, timing each stage, and turning every failure into a
//! clinician-safe answer.

pub mod decision;
