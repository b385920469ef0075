//! Start-up of `neurocds worker`: the analysis worker alone (a GPU machine, say), with
//! `/healthz`, `/readyz` and `/metrics` on `worker.listen` for the platform's probes and scrapes.
//! It answers no hooks and serves no pages; it needs the database and the PACS, nothing else.

use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, dev::Server, web};
use serde_json::json;

use super::{Analyses, Core, StartupError};
use crate::{metrics::Gauges, worker::Worker};
use neurocds_analysis::inference::device::device_name;

/// A built, bound, not yet running worker process.
pub struct WorkerProcess {
    port: u16,
    server: Server,
    worker: Worker,
}

/// What the worker's probes read.
#[derive(Clone)]
struct Probe {
    core: std::sync::Arc<Core>,
    worker: Worker,
}

impl WorkerProcess {
    /// Applies pending migrations, loads the ensemble, binds `worker.listen`, and starts claiming.
    pub async fn build(settings: crate::config::Settings) -> Result<WorkerProcess, StartupError> {
        let core = Core::build(settings, Analyses::InProcess).await?;
        // Built in-process above, so always present; a typed error rather than a panic all the same.
        let analyses = core.analyses.as_ref().ok_or_else(|| StartupError::Device("the worker has no ensemble loaded".into()))?;
        let analyser = analyses.analyser.clone();
        let worker = Worker::new(core.queue.clone(), analyser, core.settings.clone(), core.metrics.clone());
        let addr = core.settings.worker.listen;
        let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr: addr.to_string(), source })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let grace = core.settings.server.shutdown_grace_s;
        tracing::info!(port, device = %device_name(analyses.device), "neurocds worker: health and metrics listening");
        let probe = web::Data::new(Probe { core: std::sync::Arc::new(core), worker: worker.clone() });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(probe.clone())
                .route("/healthz", web::get().to(crate::web::health::healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics))
        })
        .workers(1)
        .shutdown_timeout(grace)
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr: addr.to_string(), source })?
        .run();
        tokio::spawn(worker.clone().run());
        Ok(WorkerProcess { port, server, worker })
    }

    /// The port of `/healthz`, `/readyz` and `/metrics`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGTERM/SIGINT, then gives the analyses it holds back to the queue.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.worker.stop().await;
        served
    }
}

/// Ready when the database answers with the current schema (the ensemble is loaded at start-up).
async fn readyz(probe: web::Data<Probe>) -> HttpResponse {
    let (database, pending) = probe.core.db.readiness().await;
    let ready = database && pending.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not-ready" },
        "role": "worker",
        "database": if database { "ok" } else { "unreachable" },
        "migrations": if pending.is_empty() { json!("current") } else { json!({ "pending": pending }) },
        "device": probe.core.analyses.as_ref().map(|a| device_name(a.device)),
        "running": probe.worker.running(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

async fn metrics(probe: web::Data<Probe>) -> HttpResponse {
    let core = &probe.core;
    let gauges = Gauges::measure(&core.queue, probe.worker.running(), core.settings.hooks.max_pending_analyses, core.analyses.as_ref().map(|a| &a.engine)).await;
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(core.metrics.render(&gauges))
}
