//! The decision: from a brain-MRI order to a recommendation, orchestrating fhir → dicomweb →
//! imaging → inference → audit, timing each stage, and turning every failure into a
//! clinician-safe answer.

pub mod analyse;
pub mod analysis;
pub mod cache;
pub mod run;

pub use run::{Pipeline, PipelineError, Ticket};
