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
//!          pipeline (a hook's side: the study's analysis, queued once, waited for within budget)
//!            │
//!            ▼
//!          queue (the durable work queue: one PostgreSQL row per analysis, leases, NOTIFY)
//!            │                                           ▲ claims, renews, finishes
//!            │                          worker (embedded in `serve`, or `neurocds worker`):
//!            │                            pipeline::analyse — study → series → volumes →
//!            │                            preprocessing → scope gate → ensemble → policy
//!            │
//!            ├─► fhir               (ImagingStudy/Endpoint look-ups; DiagnosticReport, Device, Provenance)
//!            ├─► egress             (where outbound requests may go: allow-lists, address guard, capped bodies)
//!            ├─► dicomweb           (QIDO-RS / WADO-RS retrieval, within limits)
//!            ├─► neurocds_analysis  (the core crate: series, volumes, preprocessing, scope gate, ensemble, policy)
//!            └─► audit              (the hash-chained decision and feedback logs in PostgreSQL)
//!          web (health, compliance API and the pages for people)
//!          monitoring (model drift: recent analyses against the validation cohort, read from audit)
//!
//!          below them all: state (what handlers receive), config, offload (large input parsed
//!          off the runtime), templates, telemetry (logs, traces, every outbound request observed),
//!          metrics (Prometheus)
//! ```
//!
//! Two things run: `serve` (hooks, pages, compliance API, and by default an embedded worker) and
//! `worker` (analyses only). `startup` builds either from these parts; no module here imports it. Dependencies
//! point down the picture: `cds` knows nothing of tensors, the analysis core nothing of HTTP.
//! The laboratory (`neurocds-lab`: synthetic cohorts, training, evaluation) is another crate and
//! another binary; this one never links it (`tests/architecture.rs`).

pub mod audit;
pub mod cds;
pub mod config;
pub mod dicomweb;
pub mod egress;
pub mod fhir;
pub mod metrics;
pub mod monitoring;
pub mod offload;
pub mod pipeline;
pub mod queue;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod templates;
pub mod web;
pub mod worker;
