//! Typed settings, layered from `config/default.toml`, an optional site file and `NEUROCDS_…`
//! environment variables.
//!
//! Parsed once at start-up: the rest of the service never sees a raw configuration string.
//! Unknown keys are refused (a typo must not silently fall back to a default), and every error
//! names the key that is wrong.

use std::{net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::Deserialize;

pub use neurocds_analysis::{decision::DecisionSettings, inference::device::DeviceChoice};

/// The whole configuration. One section per concern; see `config/default.toml` for the meaning
/// of every field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub fhir: FhirSettings,
    pub dicomweb: DicomWebSettings,
    pub trust: TrustSettings,
    pub egress: EgressSettings,
    pub audit: AuditSettings,
    pub staff: StaffSettings,
    pub hooks: HookSettings,
    pub imaging: ImagingSettings,
    pub model: ModelSettings,
    pub decision: DecisionSettings,
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub traces: TracesSettings,
    pub monitoring: MonitoringSettings,
    pub worker: WorkerSettings,
}

/// Prometheus `/metrics` (see [`crate::metrics`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Serve it on this address only (a management port), not on `server.listen`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// OpenTelemetry traces (see [`crate::telemetry::traces`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesSettings {
    /// The OTLP/HTTP collector's base URL (e.g. `http://otel-collector:4318`); spans go to
    /// `{otlp_endpoint}/v1/traces` as protobuf. Unset: nothing is exported (trace ids still
    /// appear in logs and decisions).
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every span.
    pub service_name: String,
    /// The share of traces we start that are recorded (0–1); a hook whose EHR sent a sampled
    /// `traceparent` is always recorded.
    pub sample_ratio: f64,
    /// How often buffered spans are sent, in milliseconds.
    pub export_interval_ms: u64,
    /// How long one export may take, in seconds.
    pub export_timeout_s: u64,
}

impl Default for TracesSettings {
    fn default() -> TracesSettings {
        TracesSettings {
            otlp_endpoint: None,
            service_name: "neurocds".into(),
            sample_ratio: 1.0,
            export_interval_ms: 5000,
            export_timeout_s: 10,
        }
    }
}

/// Model monitoring (see [`crate::monitoring`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSettings {
    /// The loaded ensemble's evaluation (`neurocds-lab evaluate`): its held-out studies are the
    /// validation cohort outputs are compared with.
    pub reference: PathBuf,
    /// The window watched, in days back from now.
    pub window_days: u32,
    /// The period before the window that inputs and outcomes without a validation reference
    /// are compared with, in days.
    pub baseline_days: u32,
    /// A population stability index above this, on any quantity, turns `/readyz` to
    /// "degraded" (never unready) and is logged.
    pub psi_alert: f64,
    /// Fewer analyses than this on either side, and a quantity is not judged (too noisy).
    pub min_analyses: usize,
    /// How often each replica recomputes the figures (for `/metrics` and `/readyz`), seconds.
    pub refresh_s: u64,
    /// Most analyses read per computation (the newest).
    pub max_analyses: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_base_url: url::Url,
    pub workers: usize,
    pub shutdown_grace_s: u64,
    pub cors_allowed_origins: Vec<String>,
    /// Largest request body accepted (hook calls with their prefetch, feedback), bytes; larger
    /// bodies get 413 before they are read further.
    pub max_request_bytes: usize,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    /// The owner's URL, for migrations only; empty: migrations run as `url`.
    pub migrate_url: String,
    pub pool_size: usize,
    pub acquire_timeout_s: u64,
    /// Longest wait for a row or table lock before the statement fails (`lock_timeout`).
    #[serde(default = "default_lock_timeout_ms")]
    pub lock_timeout_ms: u64,
    /// Longest any one statement may run (`statement_timeout`).
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

fn default_lock_timeout_ms() -> u64 {
    5_000
}

fn default_statement_timeout_ms() -> u64 {
    30_000
}

/// The URL holds a password: keep it out of `{:?}` output.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &"<redacted>")
            .field("migrate_url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSettings {
    pub request_timeout_s: u64,
    pub max_pages: usize,
    pub write_reports: bool,
    /// Largest answer read from a FHIR server.
    #[serde(default = "default_fhir_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_fhir_max_response_bytes() -> u64 {
    16 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomWebSettings {
    pub default_base_url: String,
    pub request_timeout_s: u64,
    pub max_instances_per_series: usize,
    pub max_bytes_per_series: u64,
    /// QIDO-RS results asked for per request (`limit`); further pages follow with `offset`.
    pub qido_page_size: usize,
    pub credentials: Vec<DicomWebCredential>,
}

/// Credentials for one DICOMweb base URL: a bearer token or a user name and password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomWebCredential {
    pub base_url: String,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for DicomWebCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DicomWebCredential").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    pub clock_skew_s: u64,
    pub max_token_age_s: u64,
    pub jwks_cache_s: u64,
    /// Also record accepted token ids in the database, so that a token replayed to another
    /// replica is refused (each process always checks its own).
    pub shared_replay_check: bool,
    pub clients: Vec<TrustedClient>,
}

/// One EHR allowed to call the service, identified by the `iss` of its JWTs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedClient {
    pub iss: String,
    /// Inline JWKS (JSON text).
    #[serde(default)]
    pub jwks: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// URLs that a token's `jku` header may name.
    #[serde(default)]
    pub allowed_jku: Vec<String>,
    /// An `aud` this client may use for every endpoint (discovery, services, feedback). Unset
    /// (the default, and what CDS Hooks 2.0 says) `aud` must be the endpoint invoked.
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Analyse and audit, but answer with no card (local validation before go-live).
    #[serde(default)]
    pub silent: bool,
    /// neurocds registered as a SMART app with this EHR: the cards' case-report link becomes a
    /// SMART launch (`type: "smart"`), and `/launch` takes this client's FHIR servers as `iss`.
    #[serde(default)]
    pub smart: Option<SmartRegistration>,
    /// The FHIR servers this client may name in `fhirServer` (URL prefixes); the service
    /// fetches prefetch from and files reports to no other.
    #[serde(default)]
    pub fhir_servers: Vec<String>,
    /// The DICOMweb origins (scheme, host, port, path prefix) this client's ImagingStudy
    /// Endpoints may point at, besides `dicomweb.default_base_url`.
    #[serde(default)]
    pub dicomweb_origins: Vec<String>,
}

/// Signed checkpoints of the audit logs' heads, written by the service (see `audit::checkpoint`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The Ed25519 signing key (PKCS#8 PEM); empty: the service makes no checkpoints.
    pub checkpoint_key: String,
    /// The file checkpoints are appended to.
    pub checkpoint_file: String,
    pub checkpoint_interval_s: u64,
}

impl AuditSettings {
    /// The key and file, when the service is to make checkpoints.
    pub fn checkpointing(&self) -> Option<(PathBuf, PathBuf)> {
        let (key, file) = (self.checkpoint_key.trim(), self.checkpoint_file.trim());
        (!key.is_empty() && !file.is_empty()).then(|| (PathBuf::from(key), PathBuf::from(file)))
    }
}

/// Where requests may go at the network level (see `egress`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSettings {
    /// Internal networks (CIDR or single addresses) that requests may reach although they are
    /// loopback, link-local or private; everything internal outside them is refused.
    pub allowed_networks: Vec<String>,
}

impl EgressSettings {
    /// The address guard these settings describe.
    pub fn address_guard(&self) -> Result<crate::egress::AddressGuard, String> {
        let nets = self.allowed_networks.iter().map(|n| crate::egress::parse_network(n)).collect::<Result<Vec<_>, _>>()?;
        Ok(crate::egress::AddressGuard::new(nets))
    }
}

fn default_algorithms() -> Vec<String> {
    vec!["ES384".into(), "RS384".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks: String,
    pub jwks_url: String,
    /// How long a JWKS fetched from `jwks_url` is used before it is fetched again.
    #[serde(default = "default_staff_jwks_cache_s")]
    pub jwks_cache_s: u64,
    pub sso: SsoSettings,
}

/// How this EHR knows neurocds as a SMART app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartRegistration {
    pub client_id: String,
    /// Empty for a public client (PKCE only).
    #[serde(default)]
    pub client_secret: String,
}

/// Staff single sign-on (`[staff.sso]`): the identity provider, this client, and how its
/// groups map to roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoSettings {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub roles_claim: String,
    pub compliance_groups: Vec<String>,
    pub neuro_oncology_groups: Vec<String>,
    pub session_lifetime_s: u64,
    pub session_key: String,
}

impl SsoSettings {
    pub fn enabled(&self) -> bool {
        !self.issuer_url.is_empty()
    }
}

fn default_staff_jwks_cache_s() -> u64 {
    3600
}

/// What order-select answers while the analysis runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderSelectAnswer {
    None,
    InfoCard,
}

/// What a hook answers when the study is out of scope (no enhancing intra-axial mass that
/// could be GBM or CNS lymphoma). Never a recommendation either way; the decision is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutOfScopeAnswer {
    None,
    InfoCard,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSettings {
    pub order_select_answer: OrderSelectAnswer,
    pub out_of_scope_answer: OutOfScopeAnswer,
    pub order_sign_budget_ms: u64,
    pub extra_brain_mri_codes: Vec<String>,
    pub max_pending_analyses: usize,
    /// Finished analyses kept in memory per process (0: always ask the database).
    pub cached_analyses: usize,
    /// How long an abstention the pixels did not settle (a series missing, unreadable or
    /// inconsistent pixels) is served before the study is analysed again, seconds.
    pub abstention_ttl_s: u64,
    /// After a failure (PACS down, time-out) the next attempt waits this long, doubling with
    /// each failure in a row up to `retry_max_s`; meanwhile hooks get the failure at once.
    pub retry_backoff_s: u64,
    pub retry_max_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagingSettings {
    pub lookback_days: i64,
    pub series_rules: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub manifest: PathBuf,
    pub device: DeviceChoice,
    pub queue_capacity: usize,
    pub threads: usize,
}

/// Analysis workers: the one `serve` embeds, and `neurocds worker` processes (see `queue`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// `serve` runs a worker in its own process. Off when workers run apart.
    pub embedded: bool,
    /// Analyses one worker runs at once.
    pub concurrency: usize,
    /// How long a claim holds a job without renewal (renewed every third of it).
    pub lease_s: u64,
    /// Runs of one job before it is dead-lettered (failures, and workers lost mid-run).
    pub max_attempts: u32,
    /// Longest one analysis may run before it is stopped and recorded as unavailable (and tried
    /// again, up to `max_attempts`). Blocking work it had started keeps its worker place until
    /// that work returns, so stopped analyses cannot pile up beyond `concurrency`.
    pub analysis_deadline_s: u64,
    /// How often workers and waiting hooks look at the queue when no wake-up came.
    pub poll_ms: u64,
    /// Where `neurocds worker` serves `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
}

/// A setting that is missing, malformed or inconsistent. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's Display already says which key and which source (file or env var).
        let mut parts = Vec::new();
        for err in e {
            let key = if err.path.is_empty() { String::new() } else { format!("`{}`: ", err.path.join(".")) };
            let source = err
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(s) => format!(" (from {} {s})", m.name),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            parts.push(format!("{key}{}{source}", err.kind));
        }
        ConfigError::Parse(parts.join("; "))
    }
}

impl DatabaseSettings {
    /// The URL migrations run as: the owner's when configured, else the service's own.
    pub fn migration_url(&self) -> &str {
        if self.migrate_url.trim().is_empty() { &self.url } else { &self.migrate_url }
    }
}

impl Settings {
    /// Loads `config/default.toml` (or `$NEUROCDS_CONFIG_DIR/default.toml`), then the file in
    /// `$NEUROCDS_CONFIG`, then the environment.
    pub fn load() -> Result<Settings, ConfigError> {
        let dir = std::env::var("NEUROCDS_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let mut figment = Figment::new().merge(Toml::file_exact(PathBuf::from(&dir).join("default.toml")));
        if let Ok(site) = std::env::var("NEUROCDS_CONFIG") {
            figment = figment.merge(Toml::file_exact(site));
        }
        Self::from_figment(
            figment
                .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
                // Only NEUROCDS_<SECTION>__<KEY>: other NEUROCDS_* variables (NEUROCDS_CACHE, the
                // test peers' NEUROCDS_TEST_*) belong to the scripts, not to the service.
                .merge(Env::prefixed("NEUROCDS_").filter(|k| k.as_str().contains("__")).split("__")),
        )
    }

    /// Extracts and checks settings from any figment (tests build their own).
    pub fn from_figment(figment: Figment) -> Result<Settings, ConfigError> {
        let settings: Settings = figment.extract()?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if self.database.url.trim().is_empty() {
            return invalid("database.url", "missing: set DATABASE_URL or NEUROCDS_DATABASE__URL");
        }
        if !(self.database.url.starts_with("postgres://") || self.database.url.starts_with("postgresql://")) {
            return invalid("database.url", "must be a postgres:// URL");
        }
        let migrate = self.database.migrate_url.trim();
        if !migrate.is_empty() && !(migrate.starts_with("postgres://") || migrate.starts_with("postgresql://")) {
            return invalid("database.migrate_url", "must be a postgres:// URL (or empty)");
        }
        if self.audit.checkpoint_key.trim().is_empty() != self.audit.checkpoint_file.trim().is_empty() {
            return invalid("audit.checkpoint_file", "set both audit.checkpoint_key and audit.checkpoint_file, or neither");
        }
        if self.audit.checkpoint_interval_s == 0 {
            return invalid("audit.checkpoint_interval_s", "must be at least 1");
        }
        if self.server.workers == 0 {
            return invalid("server.workers", "must be at least 1");
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        if self.model.queue_capacity == 0 {
            return invalid("model.queue_capacity", "must be at least 1");
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.worker.lease_s < 3 {
            return invalid("worker.lease_s", "must be at least 3 (the lease is renewed every third of it)");
        }
        if self.worker.analysis_deadline_s == 0 {
            return invalid("worker.analysis_deadline_s", "must be at least 1");
        }
        if self.worker.max_attempts == 0 {
            return invalid("worker.max_attempts", "must be at least 1");
        }
        if self.dicomweb.qido_page_size == 0 {
            return invalid("dicomweb.qido_page_size", "must be at least 1");
        }
        if self.server.max_request_bytes < 64 * 1024 {
            return invalid("server.max_request_bytes", "must be at least 65536 (a hook call with its prefetch)");
        }
        if self.hooks.retry_max_s < self.hooks.retry_backoff_s {
            return invalid("hooks.retry_max_s", "must be at least hooks.retry_backoff_s");
        }
        if self.hooks.max_pending_analyses == 0 {
            return invalid("hooks.max_pending_analyses", "must be at least 1");
        }
        let d = &self.decision;
        for (key, v) in [("decision.lymphoma_likely", d.lymphoma_likely), ("decision.gbm_likely", d.gbm_likely), ("decision.max_member_spread", d.max_member_spread)] {
            if !(0.0..=1.0).contains(&v) {
                return invalid(key, "must lie between 0 and 1");
            }
        }
        if d.lymphoma_likely > 0.0 && d.gbm_likely > 0.0 && d.gbm_likely >= d.lymphoma_likely {
            return invalid("decision.gbm_likely", "must be below decision.lymphoma_likely");
        }
        for (i, c) in self.trust.clients.iter().enumerate() {
            if c.iss.trim().is_empty() {
                return invalid(&format!("trust.clients[{i}].iss"), "missing");
            }
            if c.jwks.is_none() && c.jwks_url.is_none() && c.allowed_jku.is_empty() {
                return invalid(&format!("trust.clients[{i}]"), "needs one of jwks, jwks_url or allowed_jku");
            }
            for (key, list) in [("fhir_servers", &c.fhir_servers), ("dicomweb_origins", &c.dicomweb_origins)] {
                for (j, entry) in list.iter().enumerate() {
                    if let Err(reason) = crate::egress::UrlPrefix::parse(entry) {
                        return invalid(&format!("trust.clients[{i}].{key}[{j}]"), &reason);
                    }
                }
            }
            for alg in &c.algorithms {
                if !matches!(alg.as_str(), "ES384" | "RS384" | "ES256" | "RS256") {
                    return invalid(&format!("trust.clients[{i}].algorithms"), &format!("{alg} is not allowed (ES384, RS384, ES256, RS256)"));
                }
            }
        }
        for (i, n) in self.egress.allowed_networks.iter().enumerate() {
            if let Err(reason) = crate::egress::parse_network(n) {
                return invalid(&format!("egress.allowed_networks[{i}]"), &reason);
            }
        }
        if !self.dicomweb.default_base_url.trim().is_empty()
            && let Err(reason) = crate::egress::UrlPrefix::parse(&self.dicomweb.default_base_url)
        {
            return invalid("dicomweb.default_base_url", &reason);
        }
        for (i, c) in self.dicomweb.credentials.iter().enumerate() {
            let basic = c.username.is_some() && c.password.is_some();
            if c.bearer_token.is_some() == basic {
                return invalid(&format!("dicomweb.credentials[{i}]"), "give either bearer_token or username and password");
            }
        }
        Ok(())
    }

    /// `<public_base_url>/cds-services`, without a doubled slash.
    pub fn cds_services_url(&self) -> String {
        format!("{}/cds-services", self.server.public_base_url.as_str().trim_end_matches('/'))
    }
}
