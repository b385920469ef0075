//! Who may read the decision log and the case reports, and a per-route rule table
//! ([`View::allows`]) saying which role opens what. A member of staff is known by either
//!
//! - **a session** (people, in a browser): signed in by the hospital's identity provider
//!   (`[staff.sso]`, see `web::signin`), with the role its groups give; or
//! - **a bearer JWT** (the compliance API's machine clients): from the configured staff issuer,
//!   with a `role` claim of `compliance` or `neuro-oncology`.
//!
//! EHR tokens (the CDS clients') never open these: they come from another issuer and carry no
//! role. On a site without an identity provider, the pages also accept a staff JWT pasted into
//! the sign-in form and kept in the `neurocds_staff` cookie (HttpOnly, SameSite=Strict).

use std::time::{Duration, Instant};

use actix_session::SessionExt;
use actix_web::{HttpRequest, cookie::Key, http::header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

pub use super::roles::{Role, View};
use super::sso::Sso;
use crate::{config::StaffSettings, egress::oauth::OAuthHttp};

/// The cookie holding a pasted staff token (sites without single sign-on).
pub const COOKIE: &str = "neurocds_staff";
/// The session entry holding the signed-in member of staff.
pub const SESSION_USER: &str = "staff";

/// A member of staff signed in by the identity provider, as the session keeps them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUser {
    pub subject: String,
    pub name: Option<String>,
    /// None: signed in, but no group of theirs maps to a neurocds role (they get the 403 page).
    pub role: Option<Role>,
    /// Unix seconds; after this the identity provider is asked again.
    pub expires_at: i64,
    /// The sign-out form's CSRF token.
    pub csrf: String,
}

#[derive(Debug, Clone)]
pub struct StaffUser {
    pub subject: String,
    pub name: Option<String>,
    pub role: Role,
    /// The session's CSRF token (None for bearer tokens, which need none).
    pub csrf: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StaffAuthError {
    #[error("no staff token")]
    Missing,
    #[error("the staff session has expired")]
    SessionExpired,
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
    /// Single sign-on for the pages, when `staff.sso.issuer_url` is set.
    sso: Option<Sso>,
    session_key: Key,
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

/// The session cookie's key: `staff.sso.session_key` (hex, ≥ 64 bytes), or a random one.
fn session_key(hex_key: &str) -> Result<Key, StaffConfigError> {
    if hex_key.is_empty() {
        return Ok(Key::generate());
    }
    let bytes = hex::decode(hex_key.trim()).map_err(|e| StaffConfigError { key: "sso.session_key", reason: format!("not hex: {e}") })?;
    Key::try_from(bytes.as_slice()).map_err(|_| StaffConfigError { key: "sso.session_key", reason: format!("{} bytes; at least 64 are needed", bytes.len()) })
}

impl StaffAuth {
    pub async fn new(settings: &StaffSettings, public_base_url: &url::Url, http: &reqwest::Client) -> Result<StaffAuth, StaffConfigError> {
        let (issuer, audience) = (settings.issuer.clone(), settings.audience.clone());
        let session_key = session_key(&settings.sso.session_key)?;
        let sso = if settings.sso.enabled() {
            if settings.sso.session_key.is_empty() {
                tracing::warn!("staff.sso.session_key is not set: sessions last until this process stops and are not shared with other replicas");
            }
            let oauth = OAuthHttp::new(http.clone(), Duration::from_secs(10));
            Some(Sso::new(&settings.sso, public_base_url, oauth).map_err(|e| StaffConfigError { key: "sso", reason: e.to_string() })?)
        } else {
            None
        };
        if settings.issuer.is_empty() {
            return Ok(StaffAuth { issuer, audience, source: None, sso, session_key });
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
        Ok(StaffAuth { issuer, audience, source: Some(source), sso, session_key })
    }

    /// Single sign-on, when configured.
    pub fn sso(&self) -> Option<&Sso> {
        self.sso.as_ref()
    }

    /// The key every replica encrypts and signs session cookies with.
    pub fn session_key(&self) -> Key {
        self.session_key.clone()
    }

    /// The token from `Authorization: Bearer …`, or (without single sign-on) the staff cookie.
    fn token(&self, req: &HttpRequest) -> Option<String> {
        let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
        bearer.or_else(|| self.sso.is_none().then(|| req.cookie(COOKIE).map(|c| c.value().to_owned())).flatten())
    }

    /// The member of staff signed in on this browser, if any. An expired sign-in is forgotten.
    fn session_user(&self, req: &HttpRequest) -> Result<Option<StaffUser>, StaffAuthError> {
        if self.sso.is_none() {
            return Ok(None);
        }
        let session = req.get_session();
        let user = match session.get::<SessionUser>(SESSION_USER) {
            Ok(Some(user)) => user,
            Ok(None) => return Ok(None),
            Err(_) => {
                session.purge();
                return Ok(None);
            }
        };
        if user.expires_at <= time::OffsetDateTime::now_utc().unix_timestamp() {
            session.purge();
            return Err(StaffAuthError::SessionExpired);
        }
        let role = user.role.ok_or(StaffAuthError::NoRole)?;
        Ok(Some(StaffUser { subject: user.subject, name: user.name, role, csrf: Some(user.csrf) }))
    }

    /// The staff member behind this request, if their role opens `view`.
    pub async fn authorize(&self, req: &HttpRequest, view: View) -> Result<StaffUser, StaffAuthError> {
        let signed_in = self.session_user(req)?;
        let user = match signed_in {
            Some(user) => user,
            None => {
                let token = self.token(req).ok_or(StaffAuthError::Missing)?;
                self.verify(&token).await?
            }
        };
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
        Ok(StaffUser { subject: data.claims.sub.unwrap_or_default(), name: None, role, csrf: None })
    }
}
