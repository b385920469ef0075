//! Who may read the decision log and the case reports: bearer JWTs from the configured staff
//! issuer with a `role` claim of `compliance` or `neuro-oncology`, and a per-route rule table
//! ([`View::allows`]) saying which role opens what.
//!
//! EHR tokens (the CDS clients') never open these: they come from another issuer and carry no
//! role. Browsers without JavaScript cannot set an Authorization header, so the pages also accept
//! the same token from the `neurocds_staff` cookie that `POST /login` sets (HttpOnly, SameSite=Strict).

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, http::header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::StaffSettings;

pub const COOKIE: &str = "neurocds_staff";

/// A staff member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Compliance,
    NeuroOncology,
}

/// What a staff route shows. Every staff route names one, and [`View::allows`] is the whole
/// rule table (the README's "Who may see what" shows the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `/reports/{id}`: one decision with its images, members and feedback.
    CaseReport,
    /// `/audit` and `GET /audit/decisions` (JSON pages), `GET /audit/summary`.
    DecisionLog,
    /// `GET /audit/decisions?format=csv|fhir`: the log in bulk, leaving the system.
    DecisionExport,
    /// `/models`: the model card.
    ModelCard,
}

impl View {
    pub fn allows(self, role: Role) -> bool {
        match self {
            View::CaseReport | View::DecisionLog | View::ModelCard => true,
            View::DecisionExport => role == Role::Compliance,
        }
    }

    fn name(self) -> &'static str {
        match self {
            View::CaseReport => "the case report",
            View::DecisionLog => "the decision log",
            View::DecisionExport => "the decision log export",
            View::ModelCard => "the model card",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StaffUser {
    pub subject: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum StaffAuthError {
    #[error("no staff token")]
    Missing,
    #[error("staff access is not configured (staff.issuer)")]
    NotConfigured,
    #[error("staff token refused: {0}")]
    Invalid(String),
    #[error("staff token has no compliance or neuro-oncology role")]
    NoRole,
    #[error("the {role:?} role does not open {view}")]
    NotAllowed { role: Role, view: &'static str },
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: `staff.{key}`: {reason}")]
pub struct StaffConfigError {
    key: &'static str,
    reason: String,
}

/// Verifies staff tokens against the issuer's keys: an inline `staff.jwks`, or the set at
/// `staff.jwks_url`, fetched at start-up and again when it is older than `jwks_cache_s` or a
/// token names a kid it lacks (at most once per [`UNKNOWN_KID_REFRESH`]) - how an identity
/// provider's key rotation reaches us. A failed refresh keeps the keys fetched before.
pub struct StaffAuth {
    issuer: String,
    audience: String,
    source: Option<KeySource>,
}

enum KeySource {
    Inline(JwkSet),
    Remote { url: String, http: reqwest::Client, cache_for: Duration, state: RwLock<Fetched> },
}

struct Fetched {
    keys: JwkSet,
    at: Instant,
    /// The last refresh tried after start-up (successful or not).
    last_refresh: Option<Instant>,
}

impl Fetched {
    fn throttled(&self) -> bool {
        self.last_refresh.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFRESH)
    }
}

/// The shortest time between two fetches of the staff JWKS.
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);
/// Longest staff JWKS we read.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    role: Option<String>,
}

async fn fetch_jwks(url: &str, http: &reqwest::Client) -> Result<JwkSet, String> {
    let response = http.get(url).timeout(Duration::from_secs(10)).send().await.map_err(|e| format!("cannot fetch: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status().as_u16()));
    }
    let body = crate::egress::read_capped(response, MAX_JWKS_BYTES).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))
}

impl StaffAuth {
    pub async fn new(settings: &StaffSettings, http: &reqwest::Client) -> Result<StaffAuth, StaffConfigError> {
        let (issuer, audience) = (settings.issuer.clone(), settings.audience.clone());
        if settings.issuer.is_empty() {
            return Ok(StaffAuth { issuer, audience, source: None });
        }
        let source = if !settings.jwks.is_empty() {
            KeySource::Inline(serde_json::from_str(&settings.jwks).map_err(|e| StaffConfigError { key: "jwks", reason: format!("not a JWKS: {e}") })?)
        } else if !settings.jwks_url.is_empty() {
            let keys = fetch_jwks(&settings.jwks_url, http).await.map_err(|reason| StaffConfigError { key: "jwks_url", reason })?;
            KeySource::Remote {
                url: settings.jwks_url.clone(),
                http: http.clone(),
                cache_for: Duration::from_secs(settings.jwks_cache_s),
                state: RwLock::new(Fetched { keys, at: Instant::now(), last_refresh: None }),
            }
        } else {
            return Err(StaffConfigError { key: "jwks", reason: "staff.issuer is set but neither jwks nor jwks_url is".into() });
        };
        Ok(StaffAuth { issuer, audience, source: Some(source) })
    }

    /// The token from `Authorization: Bearer …` or the staff cookie.
    fn token(req: &HttpRequest) -> Option<String> {
        let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
        bearer.or_else(|| req.cookie(COOKIE).map(|c| c.value().to_owned()))
    }

    /// The staff member behind this request, if their role opens `view`.
    pub async fn authorize(&self, req: &HttpRequest, view: View) -> Result<StaffUser, StaffAuthError> {
        let token = Self::token(req).ok_or(StaffAuthError::Missing)?;
        let user = self.verify(&token).await?;
        if !view.allows(user.role) {
            return Err(StaffAuthError::NotAllowed { role: user.role, view: view.name() });
        }
        Ok(user)
    }

    /// The key for `kid`, refreshing a fetched set when it is stale or lacks the kid.
    async fn key(&self, kid: &str) -> Result<DecodingKey, StaffAuthError> {
        let decoding = |set: &JwkSet| set.find(kid).map(|jwk| DecodingKey::from_jwk(jwk).map_err(|e| StaffAuthError::Invalid(e.to_string())));
        match self.source.as_ref().ok_or(StaffAuthError::NotConfigured)? {
            KeySource::Inline(set) => decoding(set).ok_or_else(|| StaffAuthError::Invalid("unknown kid".into()))?,
            KeySource::Remote { url, http, cache_for, state } => {
                {
                    let fetched = state.read().await;
                    let fresh = fetched.at.elapsed() < *cache_for;
                    let throttled = fetched.throttled();
                    if let Some(key) = decoding(&fetched.keys)
                        && (fresh || throttled)
                    {
                        return key;
                    }
                    if throttled {
                        return Err(StaffAuthError::Invalid("unknown kid".into()));
                    }
                }
                let mut fetched = state.write().await;
                if !fetched.throttled() {
                    fetched.last_refresh = Some(Instant::now());
                    match fetch_jwks(url, http).await {
                        Ok(keys) => {
                            fetched.keys = keys;
                            fetched.at = Instant::now();
                        }
                        Err(reason) => tracing::warn!(%reason, "staff JWKS refresh failed; using the keys fetched before"),
                    }
                }
                decoding(&fetched.keys).ok_or_else(|| StaffAuthError::Invalid("unknown kid".into()))?
            }
        }
    }

    pub async fn verify(&self, token: &str) -> Result<StaffUser, StaffAuthError> {
        if self.source.is_none() {
            return Err(StaffAuthError::NotConfigured);
        }
        let h = decode_header(token).map_err(|e| StaffAuthError::Invalid(e.to_string()))?;
        if !matches!(h.alg, Algorithm::ES256 | Algorithm::ES384 | Algorithm::RS256 | Algorithm::RS384) {
            return Err(StaffAuthError::Invalid(format!("algorithm {:?} is not accepted", h.alg)));
        }
        let kid = h.kid.as_deref().ok_or_else(|| StaffAuthError::Invalid("no kid".into()))?;
        let key = self.key(kid).await?;
        let mut v = Validation::new(h.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = 60;
        let data = decode::<Claims>(token, &key, &v).map_err(|e| StaffAuthError::Invalid(e.to_string()))?;
        let role = match data.claims.role.as_deref() {
            Some("compliance") => Role::Compliance,
            Some("neuro-oncology") => Role::NeuroOncology,
            _ => return Err(StaffAuthError::NoRole),
        };
        Ok(StaffUser { subject: data.claims.sub.unwrap_or_default(), role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compliance_exports_the_log_and_both_roles_open_the_rest() {
        for view in [View::CaseReport, View::DecisionLog, View::ModelCard] {
            assert!(view.allows(Role::Compliance) && view.allows(Role::NeuroOncology), "{view:?}");
        }
        assert!(View::DecisionExport.allows(Role::Compliance));
        assert!(!View::DecisionExport.allows(Role::NeuroOncology));
    }
}
