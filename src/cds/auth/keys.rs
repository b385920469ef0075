//! Public keys of trusted EHRs: parsing JWK Sets and keeping fetched ones fresh.
//!
//! A JWK Set (RFC 7517) is `{"keys": [{"kty": "EC", "crv": "P-384", "kid": "…", "x": "…",
//! "y": "…"}, …]}`. Only the key types the CDS Hooks algorithms need are kept: EC P-256/P-384
//! and RSA of at least 2048 bits. A set fetched from the network may hold other keys (for
//! encryption, other curves); those are skipped, not fatal. Inline sets from the configuration
//! are strict, because a key the operator wrote down and we silently ignore is a support call.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::{
    metrics::{Metrics, Peer},
    telemetry::outbound,
};

/// The signing algorithms a trusted client may use. Everything else - `none`, HMAC (a shared
/// secret is no proof of identity), PS*, EdDSA - is refused before any key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    ES256,
    ES384,
    RS256,
    RS384,
}

impl SigningAlgorithm {
    /// The JOSE name (`"ES384"`), or `None` for any algorithm we do not accept.
    pub fn parse(name: &str) -> Option<SigningAlgorithm> {
        match name {
            "ES256" => Some(Self::ES256),
            "ES384" => Some(Self::ES384),
            "RS256" => Some(Self::RS256),
            "RS384" => Some(Self::RS384),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
        }
    }

    pub(super) fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            Self::ES256 => Algorithm::ES256,
            Self::ES384 => Algorithm::ES384,
            Self::RS256 => Algorithm::RS256,
            Self::RS384 => Algorithm::RS384,
        }
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of public key a JWK holds; decides which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyType {
    EcP256,
    EcP384,
    Rsa,
}

impl KeyType {
    pub(super) fn describe(self) -> &'static str {
        match self {
            KeyType::EcP256 => "EC P-256",
            KeyType::EcP384 => "EC P-384",
            KeyType::Rsa => "RSA",
        }
    }
}

/// One usable verification key from a JWK Set.
pub(super) struct PublicKey {
    pub(super) key_type: KeyType,
    /// The JWK's own `alg`, when it pins one.
    pub(super) pinned: Option<SigningAlgorithm>,
    pub(super) decoding: DecodingKey,
}

impl PublicKey {
    /// Whether a token signed with `alg` may be checked with this key. Checked before the
    /// signature so that a P-256 key is never asked to verify ES384, nor an RSA key ES*.
    pub(super) fn fits(&self, alg: SigningAlgorithm) -> bool {
        let type_fits = match alg {
            SigningAlgorithm::ES256 => self.key_type == KeyType::EcP256,
            SigningAlgorithm::ES384 => self.key_type == KeyType::EcP384,
            SigningAlgorithm::RS256 | SigningAlgorithm::RS384 => self.key_type == KeyType::Rsa,
        };
        type_fits && self.pinned.is_none_or(|pinned| pinned == alg)
    }
}

pub(super) type KeyMap = HashMap<String, Arc<PublicKey>>;

/// The usable keys of a JWK Set, and why the others were left out.
pub(super) struct ParsedJwks {
    pub(super) keys: KeyMap,
    pub(super) skipped: Vec<String>,
}

/// Parses a JWK Set document. Fails only when the document itself is not a JWK Set; single
/// keys that cannot be used land in `skipped` with the reason.
pub(super) fn parse_jwks(text: &str) -> Result<ParsedJwks, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "not a JWK Set: no \"keys\" array".to_string())?;
    let mut keys = KeyMap::new();
    let mut skipped = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let kid = entry.get("kid").and_then(Value::as_str);
        let label = match kid {
            Some(kid) => format!("key {i} (kid {kid:?})"),
            None => format!("key {i}"),
        };
        let Some(kid) = kid else {
            // CDS Hooks requires `kid` in every token, so a key without one can never be chosen.
            skipped.push(format!("{label}: no kid"));
            continue;
        };
        match parse_jwk(entry) {
            Ok(key) => {
                if keys.contains_key(kid) {
                    skipped.push(format!("{label}: kid used twice; the first is kept"));
                } else {
                    keys.insert(kid.to_string(), Arc::new(key));
                }
            }
            Err(reason) => skipped.push(format!("{label}: {reason}")),
        }
    }
    Ok(ParsedJwks { keys, skipped })
}

fn parse_jwk(jwk: &Value) -> Result<PublicKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if jwk.get("d").is_some() {
        return Err("holds private key material; publish only the public key".into());
    }
    if let Some(usage) = field("use")
        && usage != "sig"
    {
        return Err(format!("use is {usage:?}, not \"sig\""));
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|op| op.as_str() == Some("verify"))
    {
        return Err("key_ops does not include \"verify\"".into());
    }
    let pinned = match field("alg") {
        None => None,
        Some(name) => Some(SigningAlgorithm::parse(name).ok_or_else(|| format!("alg {name:?} is not accepted"))?),
    };
    let component = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or_else(|| format!("no {name}"))?;
        URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|e| format!("{name} is not base64url: {e}"))
    };
    let (key_type, decoding) = match field("kty") {
        Some("EC") => {
            let (key_type, size) = match field("crv") {
                Some("P-256") => (KeyType::EcP256, 32),
                Some("P-384") => (KeyType::EcP384, 48),
                other => return Err(format!("curve {other:?} is not P-256 or P-384")),
            };
            let (x, y) = (component("x")?, component("y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("x and y must be {size} bytes for this curve"));
            }
            // An uncompressed SEC1 point, which is what the EC verifiers expect.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point))
        }
        Some("RSA") => {
            let (n, e) = (component("n")?, component("e")?);
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < 256 {
                return Err(format!("RSA modulus is {} bits; at least 2048 are required", significant * 8));
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        other => return Err(format!("kty {other:?} is not EC or RSA")),
    };
    let key = PublicKey { key_type, pinned, decoding };
    if let Some(alg) = pinned
        && !key.fits(alg)
    {
        return Err(format!("alg {alg} does not suit a {} key", key_type.describe()));
    }
    Ok(key)
}

/// Why a key could not be found in a fetched JWK Set.
#[derive(Debug)]
pub(super) enum LookupError {
    /// Not in the set, even after refreshing it (or refreshing was throttled).
    UnknownKid,
    /// The set could not be fetched and nothing usable is cached.
    Fetch(String),
}

/// A JWK Set published at a URL (`jwks_url` or an allowed `jku`), fetched on first use, cached
/// for `jwks_cache_s`, and refreshed early when a token names a kid we do not know - that is
/// how key rotation reaches us. A refresh for an unknown kid happens at most once per
/// [`UNKNOWN_KID_REFRESH_INTERVAL`], so tokens with made-up kids cannot make us hammer the
/// EHR's key server.
pub(super) struct RemoteJwks {
    url: String,
    /// Held across the fetch, on purpose: concurrent requests wait for one fetch instead of
    /// each starting their own.
    state: tokio::sync::Mutex<RemoteState>,
}

#[derive(Default)]
struct RemoteState {
    keys: KeyMap,
    fetched_at: Option<Instant>,
    unknown_kid_refresh_at: Option<Instant>,
    failed_at: Option<Instant>,
}

pub(super) const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, wait this long before trying again (stale keys are used meanwhile).
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWK Set is a few kilobytes; anything much larger is not one.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

impl RemoteJwks {
    pub(super) fn new(url: String) -> RemoteJwks {
        RemoteJwks { url, state: tokio::sync::Mutex::new(RemoteState::default()) }
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// The key with this kid, fetching or refreshing the set as the rules above allow.
    pub(super) async fn key(&self, kid: &str, fetcher: &KeyFetcher, cache_for: Duration) -> Result<Arc<PublicKey>, LookupError> {
        let mut state = self.state.lock().await;
        let mut fetched_now = false;
        let stale = state.fetched_at.is_none_or(|at| at.elapsed() >= cache_for);
        let may_retry = state.failed_at.is_none_or(|at| at.elapsed() >= FAILED_FETCH_BACKOFF);
        if stale && may_retry {
            match fetcher.fetch(&self.url).await {
                Ok(keys) => {
                    state.keys = keys;
                    state.fetched_at = Some(Instant::now());
                    state.failed_at = None;
                    fetched_now = true;
                }
                Err(reason) => {
                    state.failed_at = Some(Instant::now());
                    if state.keys.is_empty() {
                        return Err(LookupError::Fetch(reason));
                    }
                    tracing::warn!(url = %self.url, %reason, "JWKS refresh failed; using the keys fetched before");
                }
            }
        } else if state.keys.is_empty()
            && let Some(failed_at) = state.failed_at
        {
            let wait = FAILED_FETCH_BACKOFF.saturating_sub(failed_at.elapsed());
            return Err(LookupError::Fetch(format!("last fetch failed; next try in {} s", wait.as_secs() + 1)));
        }
        if let Some(key) = state.keys.get(kid) {
            return Ok(key.clone());
        }
        let may_refresh = state.unknown_kid_refresh_at.is_none_or(|at| at.elapsed() >= UNKNOWN_KID_REFRESH_INTERVAL);
        if fetched_now || !may_refresh {
            return Err(LookupError::UnknownKid);
        }
        state.unknown_kid_refresh_at = Some(Instant::now());
        let keys = fetcher.fetch(&self.url).await.map_err(LookupError::Fetch)?;
        state.keys = keys;
        state.fetched_at = Some(Instant::now());
        state.keys.get(kid).cloned().ok_or(LookupError::UnknownKid)
    }
}

/// Fetches key sets: one HTTP client for every remote set, with the metrics it reports to.
pub(super) struct KeyFetcher {
    pub(super) http: reqwest::Client,
    pub(super) metrics: Option<Metrics>,
}

impl KeyFetcher {
    async fn fetch(&self, url: &str) -> Result<KeyMap, String> {
        let request = self.http.get(url).header(reqwest::header::ACCEPT, "application/json, application/jwk-set+json").timeout(FETCH_TIMEOUT);
        let result = outbound::send(request, Peer::Jwks, "GET", "key set", self.metrics.as_ref()).await;
        let response = result.map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered HTTP {}", response.status()));
        }
        let body = crate::egress::read_capped(response, MAX_JWKS_BYTES).await.map_err(|e| e.to_string())?;
        let text = std::str::from_utf8(&body).map_err(|_| "body is not UTF-8".to_string())?;
        let parsed = parse_jwks(text)?;
        for reason in &parsed.skipped {
            tracing::debug!(%url, %reason, "JWKS key skipped");
        }
        if parsed.keys.is_empty() {
            return Err("no usable signing key in the set".into());
        }
        Ok(parsed.keys)
    }
}
