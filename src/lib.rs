//! neurocds: a CDS Hooks service that, when a clinician selects or signs a brain MRI order,
//! estimates from the patient's most recent prior MR (T1 post-contrast + T2) whether an enhancing
//! brain lesion looks like glioblastoma (IDH-wildtype) or primary CNS lymphoma, and advises
//! stereotactic biopsy, resection planning or tumour-board review. It advises; it never orders.
//!
//! The modules follow the path a hook travels:
//!
//! ```text
//!  EHR ──► cds (protocol: JWT trust, hook request, prefetch, cards, feedback)
//!            │
//!            ▼
//!          pipeline (the decision: orchestrates the steps, applies the policy, times them)
//!            │
//!            ├─► fhir      (ImagingStudy/Endpoint look-ups; DiagnosticReport, Device, Provenance)
//!            ├─► dicomweb  (QIDO-RS / WADO-RS retrieval)
//!            ├─► imaging   (series recognition, volume assembly, preprocessing, key images)
//!            ├─► inference (the TorchScript ensemble on CUDA or CPU)
//!            └─► audit     (the hash-chained decision log in PostgreSQL)
//!          web (health, compliance API and the pages for people)
//!          egress (where outbound requests may go: per-client allow-lists, address guard)
//!          offload (large outside input parsed on the blocking pool, not the runtime)
//! ```
//!
//! Dependencies point down this picture: `cds` knows nothing of tensors, `inference` nothing of
//! HTTP. `cohort` (synthetic studies) sits beside the path: it feeds training and the demo.

pub mod audit;
pub mod cds;

pub mod config;
pub mod dicomweb;
pub mod egress;
pub mod fhir;


pub mod offload;
pub mod pipeline;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod templates;
pub mod web;
