//! Start-up of the two things that run: `serve` ([`Application::build`], which main and every
//! test call, on a chosen or random port) and `worker` ([`WorkerProcess::build`]). Both build the
//! same [`Core`] first.

mod worker;

pub use worker::WorkerProcess;

use std::{net::TcpListener, path::PathBuf, sync::Arc, time::Instant};

use actix_cors::Cors;
use actix_web::{
    App, HttpServer,
    dev::Server,
    http::header,
    middleware::{DefaultHeaders, from_fn},
    web,
};
use tracing_actix_web::TracingLogger;

use crate::{
    audit::{Database, db},
    cds::{auth::Verifier, hook::BrainMriCodes},
    config::Settings,
    dicomweb::DicomWebClient,
    egress::EgressPolicy,
    fhir::client::FhirClient,
    metrics::{Metrics, ModelIdentity},
    pipeline::{Pipeline, analyse::Analyser},
    queue::{Events, Queue},
    state::AppState,
    web as pages,
    worker::Worker,
};
use neurocds_analysis::{
    imaging::SeriesRules,
    inference::{Engine, Manifest, device::device_name, select_device},
};

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: Server,
    state: AppState,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Checkpoint(#[from] crate::audit::checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] neurocds_analysis::inference::InferenceError),
    #[error("{0}")]
    Device(String),
    #[error("the model expects preprocessing {manifest}, this service runs {service}: retrain, or use a matching build")]
    RecipeMismatch { manifest: String, service: &'static str },
    #[error(transparent)]
    Staff(#[from] crate::web::staff::StaffConfigError),
    #[error(transparent)]
    Trust(#[from] crate::cds::auth::TrustError),
    #[error(transparent)]
    SeriesRules(#[from] neurocds_analysis::imaging::SeriesRulesError),
    #[error(transparent)]
    DicomWeb(#[from] crate::dicomweb::DicomWebError),
    #[error("egress policy: {0}")]
    Egress(String),
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error("cannot build an HTTP client: {0}")]
    Http(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Appends a signed checkpoint of the logs' heads every `interval` while they move (one at
/// start-up too). A failure is logged and retried at the next tick; it never stops the service.
async fn checkpoint_periodically(db: Database, key: crate::audit::checkpoint::SigningKey, file: std::path::PathBuf, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        ticks.tick().await;
        match db.chain_heads().await {
            Ok(heads) if last.as_ref() == Some(&heads) => continue,
            Ok(heads) => match crate::audit::checkpoint::append(&db, &key, &file).await {
                Ok(c) => {
                    tracing::info!(decisions_seq = c.decisions.seq, feedback_seq = c.feedback.seq, "audit checkpoint written");
                    last = Some(heads);
                }
                Err(e) => tracing::error!(error = %e, "could not write an audit checkpoint"),
            },
            Err(e) => tracing::warn!(error = %e, "could not read the audit logs' heads for a checkpoint"),
        }
    }
}

/// What both roles build: the database (migrated), the model's identity (its manifest), the
/// metrics, the egress policy, the queue with its wake-ups — and, in a process that runs
/// analyses (a worker, or `serve` with its embedded worker), the ensemble and the analyser.
pub(crate) struct Core {
    pub settings: Arc<Settings>,
    pub db: Database,
    /// The ensemble's manifest: its name and version key every analysis, and `/readyz` shows it.
    pub manifest: Arc<Manifest>,
    /// `None` in a `serve` process whose analyses run in workers: no libtorch, no members.
    pub analyses: Option<InProcess>,
    pub metrics: Metrics,
    pub egress: Arc<EgressPolicy>,
    pub queue: Queue,
}

/// What running analyses in this process takes: the ensemble on its device, and the analyser.
pub(crate) struct InProcess {
    pub engine: Engine,
    pub device: tch::Device,
    pub analyser: Analyser,
}

/// Whether the process being built runs analyses itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Analyses {
    InProcess,
    InWorkers,
}

impl Core {
    /// Applies pending migrations, reads the manifest (and loads the ensemble when `analyses` run
    /// here), and starts listening for queue wake-ups.
    pub(crate) async fn build(settings: Settings, analyses: Analyses) -> Result<Core, StartupError> {
        // As the owner when configured: the service's own role cannot alter the schema.
        let url = settings.database.migration_url().to_owned();
        let applied = tokio::task::spawn_blocking(move || db::run_migrations(&url))
            .await
            .map_err(|e| crate::audit::AuditError::Migration(e.to_string()))??;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied database migrations");
        }
        let db = Database::connect(&settings.database)?;
        let manifest_path = resolve(&settings.model.manifest);
        let engine = match analyses {
            Analyses::InProcess => {
                let device = select_device(settings.model.device).map_err(StartupError::Device)?;
                let spread = (settings.decision.max_member_spread > 0.0).then_some(settings.decision.max_member_spread);
                Some((Engine::start(&manifest_path, device, settings.model.queue_capacity, settings.model.threads, spread)?, device))
            }
            Analyses::InWorkers => None,
        };
        let manifest = match &engine {
            Some((e, _)) => Arc::new(e.manifest().clone()),
            None => Arc::new(Manifest::load(&manifest_path).map_err(neurocds_analysis::inference::InferenceError::from)?),
        };
        // A model trained on one recipe must not be fed another (nor skip the scope gate).
        let recipe = &manifest.preprocessing_version;
        if recipe != neurocds_analysis::imaging::preprocess::RECIPE_VERSION {
            return Err(StartupError::RecipeMismatch { manifest: recipe.clone(), service: neurocds_analysis::imaging::preprocess::RECIPE_VERSION });
        }
        let device_label = engine.as_ref().map_or_else(|| crate::state::NO_DEVICE.to_owned(), |(_, d)| device_name(*d));
        let metrics = Metrics::new(&ModelIdentity {
            name: &manifest.name,
            version: &manifest.version,
            ensemble_sha256: &manifest.ensemble_hash(),
            preprocessing: &manifest.preprocessing_version,
            device: &device_label,
        });
        if let Some((engine, _)) = &engine {
            let batches = metrics.clone();
            engine.observe_batches(Box::new(move |pass| batches.inference_batch(&device_label, pass.studies, pass.duration, &pass.waits)));
        }
        let writes = metrics.clone();
        db.observe_writes(Box::new(move |batch| writes.audit_write(batch.decisions, batch.lag)));
        let egress = Arc::new(EgressPolicy::from_settings(&settings).map_err(StartupError::Egress)?);
        let events = Events::new();
        tokio::spawn(events.clone().listen(settings.database.url.clone()));
        let queue = Queue::new(db.clone(), &settings.hooks, &settings.worker, events);
        let settings = Arc::new(settings);
        let analyses = match engine {
            Some((engine, device)) => {
                let dicomweb = DicomWebClient::new(&settings.dicomweb, egress.guard())?.with_metrics(metrics.clone());
                let rules = SeriesRules::load(&settings.imaging.series_rules)?;
                let analyser = Analyser::new(engine.clone(), dicomweb, rules, settings.clone());
                Some(InProcess { engine, device, analyser })
            }
            None => None,
        };
        Ok(Core { settings, db, manifest, analyses, metrics, egress, queue })
    }

    /// `name@version` of the ensemble: part of every analysis's key.
    pub(crate) fn model_version(&self) -> String {
        format!("{}@{}", self.manifest.name, self.manifest.version)
    }
}

impl Application {
    /// Applies pending migrations, binds the listener, and — unless `worker.embedded` is off —
    /// loads the ensemble and starts the embedded worker (otherwise only the manifest is read).
    /// Port 0 picks a free one.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        // A bad key stops start-up: a site that asked for checkpoints must not silently lack them.
        let checkpoints = match settings.audit.checkpointing() {
            Some((key, file)) => Some((crate::audit::checkpoint::SigningKey::load(&key)?, file)),
            None => None,
        };
        let analyses = if settings.worker.embedded { Analyses::InProcess } else { Analyses::InWorkers };
        let core = Core::build(settings, analyses).await?;
        let settings = core.settings.clone();
        // Staff key sets and single sign-on go through the egress address guard like every
        // other outbound request.
        let http = core
            .egress
            .guard()
            .http_client()
            .timeout(std::time::Duration::from_secs(settings.fhir.request_timeout_s))
            .build()
            .map_err(|e| StartupError::Http(e.to_string()))?;
        let staff = Arc::new(crate::web::staff::StaffAuth::new(&settings.staff, &settings.server.public_base_url, &http).await?);
        let verifier = Arc::new(Verifier::new(&settings)?.with_metrics(core.metrics.clone()));
        let launcher = Arc::new(crate::web::smart::Launcher::new(&settings, core.egress.clone()).map_err(StartupError::Http)?);
        let fhir = FhirClient::new(&settings.fhir, core.egress.guard()).map_err(|e| StartupError::Http(e.to_string()))?.with_metrics(core.metrics.clone());
        let runtime = tokio::runtime::Handle::current();
        let pipeline = Pipeline::new(core.queue.clone(), core.model_version(), settings.clone());
        let worker = core.analyses.as_ref().map(|a| Worker::new(core.queue.clone(), a.analyser.clone(), settings.clone(), core.metrics.clone()));
        if let Some(w) = &worker {
            runtime.spawn(w.clone().run());
        }
        let listener = TcpListener::bind(settings.server.listen).map_err(|source| StartupError::Bind { addr: settings.server.listen.to_string(), source })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let metrics_listener = match settings.metrics.listen.filter(|_| settings.metrics.enabled) {
            Some(addr) => Some(TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr: addr.to_string(), source })?),
            None => None,
        };
        let device = core.analyses.as_ref().map_or_else(|| crate::state::NO_DEVICE.to_owned(), |a| device_name(a.device));
        let thresholds = neurocds_analysis::decision::effective_thresholds(&settings.decision, &core.manifest.thresholds);
        let monitor = Arc::new(crate::monitoring::Monitor::new(settings.monitoring.clone(), &core.manifest, &thresholds));
        let state = AppState {
            brain_mri_codes: BrainMriCodes::new(&settings.hooks.extra_brain_mri_codes),
            settings,
            db: core.db,
            model: core.manifest,
            engine: core.analyses.map(|a| a.engine),
            pipeline,
            worker,
            verifier,
            staff,
            launcher,
            fhir,
            egress: core.egress,
            templates: Arc::new(crate::templates::markdown()?),
            pages: Arc::new(crate::templates::html()?),
            runtime,
            started: Instant::now(),
            metrics: core.metrics,
            monitor,
        };
        state.monitor.clone().spawn(state.db.clone());
        let server = run(listener, state.clone())?;
        let metrics_port = match metrics_listener {
            Some(l) => {
                let port = l.local_addr().map(|a| a.port()).ok();
                state.runtime.spawn(run_metrics(l, state.clone())?);
                port
            }
            None => None,
        };
        if let Some((key, file)) = checkpoints {
            let interval = std::time::Duration::from_secs(state.settings.audit.checkpoint_interval_s);
            state.runtime.spawn(checkpoint_periodically(state.db.clone(), key, file, interval));
        }
        tracing::info!(port, %device, embedded_worker = state.worker.is_some(), "neurocds listening");
        Ok(Application { port, metrics_port, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The management port serving `/metrics`, when `metrics.listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the server from another task: `stop(true)` is what SIGTERM does (no new
    /// connections; requests in flight get `server.shutdown_grace_s` to finish).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT; in-flight requests get `server.shutdown_grace_s` to finish.
    /// Then the embedded worker gives the analyses it holds back to the queue.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some(w) = &self.state.worker {
            w.stop().await;
        }
        served
    }
}

/// Relative model paths are taken from the working directory, as every other path in the config.
fn resolve(p: &std::path::Path) -> PathBuf {
    p.to_path_buf()
}

fn run(listener: TcpListener, state: AppState) -> Result<Server, StartupError> {
    let settings = state.settings.clone();
    let (workers, grace) = (settings.server.workers, settings.server.shutdown_grace_s);
    let metrics_here = settings.metrics.enabled && settings.metrics.listen.is_none();
    let (session_key, secure) = (state.staff.session_key(), settings.server.public_base_url.scheme() == "https");
    let data = web::Data::new(state);
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(pages::signin::sessions(session_key.clone(), secure))
            .wrap(from_fn(pages::metrics::record))
            .wrap(security_headers())
            .wrap(cors(&settings.server.cors_allowed_origins))
            .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
            .app_data(data.clone())
            .app_data(web::JsonConfig::default().limit(settings.server.max_request_bytes))
            .app_data(web::PayloadConfig::new(settings.server.max_request_bytes))
            .app_data(web::QueryConfig::default().error_handler(|e, _| invalid_query(e)))
            .configure(pages::routes)
            .configure(crate::cds::routes)
            .configure(|cfg| {
                if metrics_here {
                    cfg.route("/metrics", web::get().to(pages::metrics::metrics));
                }
            })
    })
    .workers(workers)
    .shutdown_timeout(grace)
    .listen(listener)
    .map_err(|source| StartupError::Bind { addr, source })?
    .run();
    Ok(server)
}

/// A query string no handler could read: 400 with an OperationOutcome naming the problem, like
/// every other refusal of the API (not actix's plain text).
fn invalid_query(e: actix_web::error::QueryPayloadError) -> actix_web::Error {
    let outcome = crate::cds::outcome::operation_outcome("invalid", &e.to_string());
    actix_web::error::InternalError::from_response(e, actix_web::HttpResponse::BadRequest().json(outcome)).into()
}

/// The management listener: `/metrics` only, one worker.
fn run_metrics(listener: TcpListener, state: AppState) -> Result<Server, StartupError> {
    let grace = state.settings.server.shutdown_grace_s;
    let data = web::Data::new(state);
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/metrics", web::get().to(pages::metrics::metrics)))
        .workers(1)
        .shutdown_timeout(grace)
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();
    Ok(server)
}

/// Every answer carries patient data or decisions about it: no cache keeps it, and the pages
/// load nothing from elsewhere and run no script (they need none), cannot be framed, and send no
/// referrer. A handler that sets one of these itself keeps its own value.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CACHE_CONTROL, "no-store"))
        .add((header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
}

/// CDS Hooks clients may run in a browser (the sandbox, SMART apps): allow the configured origins,
/// the Authorization header, and no credentials (tokens travel in headers, never cookies).
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(vec!["GET", "POST", "OPTIONS"])
        .allowed_headers(vec![header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.send_wildcard().allow_any_origin();
    } else {
        for o in origins {
            cors = cors.allowed_origin(o);
        }
    }
    cors
}
