//! Who may read the decision log and the case reports: bearer JWTs from the configured staff
//! issuer with a `role` claim of `compliance` or `neuro-oncology`.
//!
//! EHR tokens (the CDS clients') never open these: they come from another issuer and carry no
//! role. Browsers without JavaScript cannot set an Authorization header, so the pages also accept
//! the same token from the `neurocds_staff` cookie that `POST /login` sets (HttpOnly, SameSite=Strict).

use actix_web::{HttpRequest, http::header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use serde::Deserialize;

use crate::config::StaffSettings;

pub const COOKIE: &str = "neurocds_staff";

/// A staff member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Compliance,
    NeuroOncology,
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
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: `staff.{key}`: {reason}")]
pub struct StaffConfigError {
    key: &'static str,
    reason: String,
}

/// Verifies staff tokens against the issuer's keys (inline `staff.jwks`, or fetched once from
/// `staff.jwks_url` at start-up).
#[derive(Clone)]
pub struct StaffAuth {
    issuer: String,
    audience: String,
    keys: Option<JwkSet>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    role: Option<String>,
}

impl StaffAuth {
    pub async fn new(settings: &StaffSettings, http: &reqwest::Client) -> Result<StaffAuth, StaffConfigError> {
        if settings.issuer.is_empty() {
            return Ok(StaffAuth { issuer: String::new(), audience: settings.audience.clone(), keys: None });
        }
        let text = if !settings.jwks.is_empty() {
            settings.jwks.clone()
        } else if !settings.jwks_url.is_empty() {
            let r = http.get(&settings.jwks_url).send().await.map_err(|e| StaffConfigError { key: "jwks_url", reason: format!("cannot fetch: {e}") })?;
            r.text().await.map_err(|e| StaffConfigError { key: "jwks_url", reason: e.to_string() })?
        } else {
            return Err(StaffConfigError { key: "jwks", reason: "staff.issuer is set but neither jwks nor jwks_url is".into() });
        };
        let keys: JwkSet = serde_json::from_str(&text).map_err(|e| StaffConfigError { key: "jwks", reason: format!("not a JWKS: {e}") })?;
        Ok(StaffAuth { issuer: settings.issuer.clone(), audience: settings.audience.clone(), keys: Some(keys) })
    }

    /// The token from `Authorization: Bearer …` or the staff cookie.
    fn token(req: &HttpRequest) -> Option<String> {
        let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
        bearer.or_else(|| req.cookie(COOKIE).map(|c| c.value().to_owned()))
    }

    pub fn verify_request(&self, req: &HttpRequest) -> Result<StaffUser, StaffAuthError> {
        let token = Self::token(req).ok_or(StaffAuthError::Missing)?;
        self.verify(&token)
    }

    pub fn verify(&self, token: &str) -> Result<StaffUser, StaffAuthError> {
        let keys = self.keys.as_ref().ok_or(StaffAuthError::NotConfigured)?;
        let h = decode_header(token).map_err(|e| StaffAuthError::Invalid(e.to_string()))?;
        if !matches!(h.alg, Algorithm::ES256 | Algorithm::ES384 | Algorithm::RS256 | Algorithm::RS384) {
            return Err(StaffAuthError::Invalid(format!("algorithm {:?} is not accepted", h.alg)));
        }
        let kid = h.kid.as_deref().ok_or_else(|| StaffAuthError::Invalid("no kid".into()))?;
        let jwk = keys.find(kid).ok_or_else(|| StaffAuthError::Invalid("unknown kid".into()))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| StaffAuthError::Invalid(e.to_string()))?;
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
