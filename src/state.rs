//! What every request handler can reach: the service's parts, built once by
//! [`crate::startup::Application::build`] and handed to actix as app data. Handlers take it
//! with `web::Data<AppState>`; this module sits below both the handlers and the start-up, so
//! neither imports the other.

use std::{sync::Arc, time::Instant};

use handlebars::Handlebars;
use neurocds_analysis::inference::{Engine, Manifest};

use crate::{
    audit::Database,
    cds::{auth::Verifier, hook::BrainMriCodes},
    config::Settings,
    egress::EgressPolicy,
    fhir::client::FhirClient,
    metrics::Metrics,
    monitoring::Monitor,
    pipeline::Pipeline,
    web::{smart::Launcher, staff::StaffAuth},
    worker::Worker,
};

/// The device label (metrics, logs, the model card) of a process that runs no analyses.
pub const NO_DEVICE: &str = "none (analyses run in workers)";

/// What every request handler can reach. Cloned into each actix worker.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    /// The ensemble's manifest (identity, operating points, model card).
    pub model: Arc<Manifest>,
    /// The loaded ensemble, when analyses run in this process; `None` when workers run apart.
    pub engine: Option<Engine>,
    pub pipeline: Pipeline,
    /// The embedded analysis worker (`worker.embedded`); `None` when workers run apart.
    pub worker: Option<Worker>,
    pub verifier: Arc<Verifier>,
    pub staff: Arc<StaffAuth>,
    /// SMART EHR launches of the case report.
    pub launcher: Arc<Launcher>,
    pub fhir: FhirClient,
    /// Where each client's hooks may send the service (FHIR servers, DICOMweb origins).
    pub egress: Arc<EgressPolicy>,
    pub brain_mri_codes: BrainMriCodes,
    /// Card text (Markdown).
    pub templates: Arc<Handlebars<'static>>,
    /// Pages and FHIR narrative (HTML).
    pub pages: Arc<Handlebars<'static>>,
    /// The process's main multi-thread runtime: analyses and report writes outlive requests.
    pub runtime: tokio::runtime::Handle,
    pub started: Instant,
    /// Prometheus metric families (`/metrics`).
    pub metrics: Metrics,
    /// Model monitoring: the latest drift figures (`/monitoring`, `/readyz`, gauges).
    pub monitor: Arc<Monitor>,
}
