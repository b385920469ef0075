//! Who is calling: verifies the signed JWT an EHR sends with every CDS Hooks request.
//!
//! CDS Hooks 2.0 §"Trusting CDS Clients": every call carries `Authorization: Bearer <JWT>`,
//! signed by the EHR's private key. The header names `alg`, `kid`, `typ` and maybe `jku`; the
//! payload carries `iss`, `aud` (the endpoint being called), `exp`, `iat` and `jti`:
//!
//! ```text
//! {"alg":"ES384","typ":"JWT","kid":"k1","jku":"https://ehr.example.org/jwks"}
//! {"iss":"https://ehr.example.org","aud":"https://cds.example.org/cds-services/neurocds",
//!  "exp":1422568860,"iat":1422568560,"jti":"ee22b021-…"}
//! ```
//!
//! A token is accepted only when its `iss` is a configured [`TrustedClient`], its algorithm is
//! one that client may use (never `none` or HMAC), its signature verifies with the client's key
//! of that `kid`, its `aud` names this service, it is fresh, and its `jti` was not seen before.
//! [`AuthError`] says precisely which rule failed, for the log; the HTTP edge answers 401 with
//! no detail, and nothing here ever logs or returns the token.
//!
//! Keys come from the client's inline `jwks`, its `jwks_url`, or a `jku` URL on its allowlist;
//! fetched sets are cached (see [`keys::RemoteJwks`]).

mod keys;
mod replay;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;

pub use keys::SigningAlgorithm;
use keys::{KeyFetcher, KeyMap, LookupError, PublicKey, RemoteJwks};
use replay::ReplayCache;

use crate::config::{Settings, TrustedClient};
use crate::egress::AddressGuard;
use crate::metrics::Metrics;

/// An EHR whose token passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClient {
    /// The configured issuer (equal to the token's `iss`).
    pub iss: String,
    /// The token's `sub`, when it has one (Epic puts its CDS client id there).
    pub sub: Option<String>,
    pub jti: String,
    /// The token's `tenant`: the healthcare organisation invoking the hook, when the EHR says.
    pub tenant: Option<String>,
    /// From the client's configuration: analyse and audit, but answer with no card.
    pub silent: bool,
    /// Unix second after which this token can no longer pass the time checks: how long its
    /// `jti` must be remembered.
    pub valid_until: i64,
}

impl VerifiedClient {
    /// Whom an analysis belongs to: the issuer, and `#tenant` when the token names one. Results
    /// are shared only within it, so what another caller's data said never decides this answer.
    pub fn analysis_owner(&self) -> String {
        match &self.tenant {
            Some(t) => format!("{}#{t}", self.iss),
            None => self.iss.clone(),
        }
    }
}

/// Why a request's credentials were refused. Meant for the log: every message names the rule
/// and, where known, the issuer, but never contains the token. Clients only ever see 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    MissingAuthorization,
    #[error("Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("token is not a JWS compact serialization: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {alg:?} is never accepted (only ES384, RS384, ES256, RS256)")]
    UnsupportedAlgorithm { alg: String },
    #[error("token typ {typ:?} is not JWT")]
    WrongType { typ: String },
    #[error("token header has `crit` extensions, which are not understood")]
    CriticalHeader,
    #[error("token header has no kid")]
    MissingKid,
    #[error("token has no {claim} claim (iss {iss:?})")]
    MissingClaim { iss: String, claim: &'static str },
    #[error("issuer {iss:?} is not a trusted client")]
    UnknownIssuer { iss: String },
    #[error("algorithm {alg} is not allowed for issuer {iss:?}")]
    AlgorithmNotAllowed { iss: String, alg: SigningAlgorithm },
    #[error("jku {jku:?} is not on the allowlist of issuer {iss:?}")]
    UntrustedJku { iss: String, jku: String },
    #[error("token has no jku, and issuer {iss:?} publishes keys only through jku")]
    MissingJku { iss: String },
    #[error("no key with kid {kid:?} for issuer {iss:?}")]
    UnknownKid { iss: String, kid: String },
    #[error("could not fetch the key set of issuer {iss:?} from {url}: {reason}")]
    KeyFetch { iss: String, url: String, reason: String },
    #[error("key {kid:?} of issuer {iss:?} cannot verify {alg}")]
    KeyTypeMismatch { iss: String, kid: String, alg: SigningAlgorithm },
    #[error("signature does not verify with key {kid:?} of issuer {iss:?}")]
    BadSignature { iss: String, kid: String },
    #[error("aud {aud:?} does not name this endpoint for issuer {iss:?}")]
    WrongAudience { iss: String, aud: Vec<String> },
    #[error("token of issuer {iss:?} expired at {exp} (now {now})")]
    Expired { iss: String, exp: i64, now: i64 },
    #[error("token of issuer {iss:?} is issued in the future (iat {iat}, now {now})")]
    IssuedInFuture { iss: String, iat: i64, now: i64 },
    #[error("token of issuer {iss:?} is too old (iat {iat}, now {now}, max age {max_age} s)")]
    TooOld { iss: String, iat: i64, now: i64, max_age: u64 },
    #[error("token of issuer {iss:?} is not valid before {nbf} (now {now})")]
    NotYetValid { iss: String, nbf: i64, now: i64 },
    #[error("token of issuer {iss:?} was already used (replayed jti)")]
    Replayed { iss: String },
}

impl AuthError {
    /// The issuer the failure concerns, when the token got far enough to name one.
    pub fn issuer(&self) -> Option<&str> {
        use AuthError::*;
        match self {
            MissingClaim { iss, .. }
            | UnknownIssuer { iss }
            | AlgorithmNotAllowed { iss, .. }
            | UntrustedJku { iss, .. }
            | MissingJku { iss }
            | UnknownKid { iss, .. }
            | KeyFetch { iss, .. }
            | KeyTypeMismatch { iss, .. }
            | BadSignature { iss, .. }
            | WrongAudience { iss, .. }
            | Expired { iss, .. }
            | IssuedInFuture { iss, .. }
            | TooOld { iss, .. }
            | NotYetValid { iss, .. }
            | Replayed { iss } => Some(iss),
            MissingAuthorization | NotBearer | Malformed(_) | UnsupportedAlgorithm { .. } | WrongType { .. } | CriticalHeader | MissingKid => None,
        }
    }
}

/// The trust configuration cannot be used. Names the client by its index in `trust.clients`.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("configuration: `trust.clients[{index}].jwks`: {reason}")]
    InlineJwks { index: usize, reason: String },
    #[error("configuration: `trust.clients[{index}].algorithms`: {alg:?} is not allowed (ES384, RS384, ES256, RS256)")]
    Algorithm { index: usize, alg: String },
    #[error("configuration: `trust.clients[{index}].algorithms`: empty")]
    NoAlgorithm { index: usize },
    #[error("configuration: `trust.clients[{index}].iss`: {iss:?} is configured twice")]
    DuplicateIssuer { index: usize, iss: String },
    #[error("configuration: `trust.clients[{index}].{key}`: {url:?} {reason}")]
    Url { index: usize, key: &'static str, url: String, reason: String },
    #[error("cannot build the HTTP client that fetches key sets: {0}")]
    HttpClient(String),
    #[error("configuration: `trust.clients[{index}]`: needs one of jwks, jwks_url or allowed_jku")]
    NoKeySource { index: usize },
}

/// Checks the bearer JWTs of CDS Hooks requests. Built once at start-up from the settings;
/// cheap to clone (all clones share the key caches and the replay cache).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    clients: HashMap<String, Client>,
    fetcher: KeyFetcher,
    clock_skew_s: i64,
    max_token_age_s: u64,
    jwks_cache: Duration,
    replay: ReplayCache,
}

/// A trusted client, with its configuration turned into keys and key sources.
struct Client {
    iss: String,
    /// The public base of the endpoints (`<public_base_url>/cds-services`): a token's `aud`
    /// must be the endpoint invoked, or the service a feedback endpoint belongs to.
    endpoints: String,
    /// An `aud` configured for this client (`trust.clients[].audience`) that opens every
    /// endpoint: looser than the spec, so only when an operator asks for it.
    shared_audience: Option<String>,
    algorithms: Vec<SigningAlgorithm>,
    inline: KeyMap,
    jwks_url: Option<Arc<RemoteJwks>>,
    /// Every URL a token's `jku` may name: the `allowed_jku` list and the `jwks_url` (the
    /// operator already trusts that one). Shared with `jwks_url` so one URL has one cache.
    jku: HashMap<String, Arc<RemoteJwks>>,
    silent: bool,
}

/// Longest `Authorization` value we parse; real CDS Hooks tokens are well under 2 KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Replay-cache bound: far above what tokens living five minutes produce at hospital rates.
const REPLAY_CACHE_CAPACITY: usize = 100_000;

impl Verifier {
    /// Parses every client's inline JWKS and key URLs now, so a bad configuration stops
    /// start-up instead of refusing the first real request.
    ///
    /// Key sets are fetched like every other outbound request: through the egress address guard
    /// (`egress.allowed_networks`), without following redirects. A key URL whose host is an
    /// internal address outside the allowed networks stops start-up; a name that resolves to one
    /// is refused when it is fetched.
    pub fn new(settings: &Settings) -> Result<Verifier, TrustError> {
        let trust = &settings.trust;
        // The settings have checked every network parses; an unparsable list allows nothing.
        let guard = settings.egress.address_guard().unwrap_or_default();
        let http = guard.http_client().build().map_err(|e| TrustError::HttpClient(e.to_string()))?;
        let mut clients = HashMap::new();
        for (index, config) in trust.clients.iter().enumerate() {
            let client = Client::from_config(index, config, settings.cds_services_url(), &guard)?;
            if clients.contains_key(&client.iss) {
                return Err(TrustError::DuplicateIssuer { index, iss: client.iss });
            }
            clients.insert(client.iss.clone(), client);
        }
        Ok(Verifier {
            inner: Arc::new(Inner {
                clients,
                fetcher: KeyFetcher { http, metrics: None },
                clock_skew_s: i64::try_from(trust.clock_skew_s).unwrap_or(i64::MAX),
                max_token_age_s: trust.max_token_age_s,
                jwks_cache: Duration::from_secs(trust.jwks_cache_s),
                replay: ReplayCache::new(REPLAY_CACHE_CAPACITY),
            }),
        })
    }

    /// Records key-set fetches under `peer="jwks"`. Call it on a new verifier, before it is
    /// cloned (a shared one keeps what it has).
    pub fn with_metrics(mut self, metrics: Metrics) -> Verifier {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.fetcher.metrics = Some(metrics);
        }
        self
    }

    /// Whether any client is configured. With none, every request is refused.
    pub fn has_clients(&self) -> bool {
        !self.inner.clients.is_empty()
    }

    /// Checks the `Authorization` header of a request to `endpoint_url` (the full public URL
    /// of the endpoint invoked: `<public_base_url>/cds-services` for discovery,
    /// `…/cds-services/{id}` for a service, `…/cds-services/{id}/feedback` for feedback).
    ///
    /// `aud` must name the endpoint invoked (`…/cds-services/{id}` also covers its
    /// `/feedback`), as CDS Hooks 2.0 says; the discovery URL opens discovery only. A client
    /// configured with an explicit `audience` may use that one value for every endpoint.
    /// A token is accepted once: its `jti` is remembered until it would expire anyway.
    pub async fn verify(&self, authorization_header: Option<&str>, endpoint_url: &str) -> Result<VerifiedClient, AuthError> {
        let inner = &*self.inner;
        let token = bearer_token(authorization_header)?;
        let parts = Parts::split(token)?;
        let header: JoseHeader = decode_json(parts.header).ok_or(AuthError::Malformed("header is not base64url JSON"))?;
        // Reading `iss` before the signature is checked is safe: it only picks whose keys to
        // check with, and nothing from the payload is trusted until the signature verifies.
        let claims: Claims = decode_json(parts.payload).ok_or(AuthError::Malformed("payload is not base64url JSON with the expected claim types"))?;

        let alg = SigningAlgorithm::parse(&header.alg).ok_or_else(|| AuthError::UnsupportedAlgorithm { alg: clip(&header.alg) })?;
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(AuthError::WrongType { typ: clip(typ) });
        }
        if header.crit.is_some() {
            return Err(AuthError::CriticalHeader);
        }
        let kid = header.kid.as_deref().ok_or(AuthError::MissingKid)?;
        let iss = claims.iss.as_deref().ok_or(AuthError::MissingClaim { iss: String::new(), claim: "iss" })?;
        let client = inner.clients.get(iss).ok_or_else(|| AuthError::UnknownIssuer { iss: clip(iss) })?;
        let iss = &client.iss;
        if !client.algorithms.contains(&alg) {
            return Err(AuthError::AlgorithmNotAllowed { iss: iss.clone(), alg });
        }

        let key = client.key(kid, header.jku.as_deref(), &inner.fetcher, inner.jwks_cache).await?;
        if !key.fits(alg) {
            return Err(AuthError::KeyTypeMismatch { iss: iss.clone(), kid: clip(kid), alg });
        }
        let verified = jsonwebtoken::crypto::verify(parts.signature, parts.signing_input.as_bytes(), &key.decoding, alg.to_jsonwebtoken());
        if !matches!(verified, Ok(true)) {
            return Err(AuthError::BadSignature { iss: iss.clone(), kid: clip(kid) });
        }

        // From here on the claims are the EHR's own.
        let audiences = claims.aud.map(Audience::into_vec).unwrap_or_default();
        if !audiences.iter().any(|aud| audience_matches(aud, &client.endpoints, client.shared_audience.as_deref(), endpoint_url)) {
            return Err(AuthError::WrongAudience { iss: iss.clone(), aud: audiences.iter().map(|a| clip(a)).collect() });
        }
        let missing = |claim| AuthError::MissingClaim { iss: iss.clone(), claim };
        let exp = claims.exp.map(numeric_date).ok_or_else(|| missing("exp"))?;
        let iat = claims.iat.map(numeric_date).ok_or_else(|| missing("iat"))?;
        let jti = claims.jti.filter(|j| !j.is_empty()).ok_or_else(|| missing("jti"))?;
        let (now, skew) = (unix_now(), inner.clock_skew_s);
        if now > exp.saturating_add(skew) {
            return Err(AuthError::Expired { iss: iss.clone(), exp, now });
        }
        if iat > now.saturating_add(skew) {
            return Err(AuthError::IssuedInFuture { iss: iss.clone(), iat, now });
        }
        let max_age = i64::try_from(inner.max_token_age_s).unwrap_or(i64::MAX);
        let too_old_after = iat.saturating_add(max_age).saturating_add(skew);
        if now > too_old_after {
            return Err(AuthError::TooOld { iss: iss.clone(), iat, now, max_age: inner.max_token_age_s });
        }
        if let Some(nbf) = claims.nbf.map(numeric_date)
            && nbf > now.saturating_add(skew)
        {
            return Err(AuthError::NotYetValid { iss: iss.clone(), nbf, now });
        }
        // Remember it only as long as it could pass the checks above; after that a replay
        // fails on its own.
        let forget_after = exp.saturating_add(skew).min(too_old_after);
        inner.replay.remember(iss, &jti, forget_after, now).map_err(|_| AuthError::Replayed { iss: iss.clone() })?;

        Ok(VerifiedClient { iss: iss.clone(), sub: claims.sub, jti, tenant: claims.tenant, silent: client.silent, valid_until: forget_after })
    }
}

impl Client {
    fn from_config(index: usize, config: &TrustedClient, endpoints: String, guard: &AddressGuard) -> Result<Client, TrustError> {
        if config.jwks.is_none() && config.jwks_url.is_none() && config.allowed_jku.is_empty() {
            return Err(TrustError::NoKeySource { index });
        }
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let alg = SigningAlgorithm::parse(name).ok_or_else(|| TrustError::Algorithm { index, alg: name.clone() })?;
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err(TrustError::NoAlgorithm { index });
        }
        let inline = match &config.jwks {
            None => KeyMap::new(),
            Some(text) => {
                let parsed = keys::parse_jwks(text).map_err(|reason| TrustError::InlineJwks { index, reason })?;
                if let Some(reason) = parsed.skipped.into_iter().next() {
                    return Err(TrustError::InlineJwks { index, reason });
                }
                if parsed.keys.is_empty() {
                    return Err(TrustError::InlineJwks { index, reason: "holds no key".into() });
                }
                parsed.keys
            }
        };
        let jwks_url = match &config.jwks_url {
            None => None,
            Some(url) => Some(Arc::new(RemoteJwks::new(checked_url(index, "jwks_url", url, guard)?))),
        };
        let mut jku = HashMap::new();
        if let Some(remote) = &jwks_url {
            jku.insert(remote.url().to_string(), remote.clone());
        }
        for url in &config.allowed_jku {
            let url = checked_url(index, "allowed_jku", url, guard)?;
            jku.entry(url.clone()).or_insert_with(|| Arc::new(RemoteJwks::new(url)));
        }
        Ok(Client {
            iss: config.iss.clone(),
            endpoints: endpoints.trim_end_matches('/').to_string(),
            shared_audience: config.audience.as_deref().map(|a| a.trim_end_matches('/').to_string()),
            algorithms,
            inline,
            jwks_url,
            jku,
            silent: config.silent,
        })
    }

    /// The key for `kid`: from the set at the token's `jku` when it names one (it must be on
    /// the allowlist, compared exactly), otherwise from the inline set, then the `jwks_url`.
    async fn key(&self, kid: &str, jku: Option<&str>, fetcher: &KeyFetcher, cache_for: Duration) -> Result<Arc<PublicKey>, AuthError> {
        let remote = match jku {
            Some(jku) => self.jku.get(jku).ok_or_else(|| AuthError::UntrustedJku { iss: self.iss.clone(), jku: clip(jku) })?,
            None => {
                if let Some(key) = self.inline.get(kid) {
                    return Ok(key.clone());
                }
                match &self.jwks_url {
                    Some(remote) => remote,
                    None if self.inline.is_empty() => return Err(AuthError::MissingJku { iss: self.iss.clone() }),
                    None => return Err(AuthError::UnknownKid { iss: self.iss.clone(), kid: clip(kid) }),
                }
            }
        };
        remote.key(kid, fetcher, cache_for).await.map_err(|e| match e {
            LookupError::UnknownKid => AuthError::UnknownKid { iss: self.iss.clone(), kid: clip(kid) },
            LookupError::Fetch(reason) => AuthError::KeyFetch { iss: self.iss.clone(), url: remote.url().to_string(), reason },
        })
    }
}

fn checked_url(index: usize, key: &'static str, text: &str, guard: &AddressGuard) -> Result<String, TrustError> {
    let bad = |reason: &str| TrustError::Url { index, key, url: text.to_string(), reason: reason.to_string() };
    let url = url::Url::parse(text).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad("must be an https:// URL"));
    }
    if guard.check_literal(&url).is_err() {
        return Err(bad("is an internal address outside egress.allowed_networks"));
    }
    if url.scheme() == "http" && !url.host_str().is_some_and(is_loopback_host) {
        tracing::warn!(index, key, url = %text, "key set URL is plain http; use https outside local tests");
    }
    // Kept as written: a token's `jku` must match it exactly, and `Url` would normalise it.
    Ok(text.to_string())
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Extracts the token from `Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::MissingAuthorization)?.trim();
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("Bearer") || token.is_empty() || token.contains(char::is_whitespace) {
        return Err(AuthError::NotBearer);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("longer than any CDS Hooks token"));
    }
    Ok(token)
}

/// The three dot-separated parts of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Parts<'a>, AuthError> {
        let mut pieces = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (pieces.next(), pieces.next(), pieces.next(), pieces.next()) else {
            return Err(AuthError::Malformed("not three dot-separated parts"));
        };
        if signature.is_empty() {
            // `alg: none` tokens end in a dot; refuse them here whatever the header says.
            return Err(AuthError::Malformed("empty signature"));
        }
        let signing_input = &token[..header.len() + 1 + payload.len()];
        Ok(Parts { header, payload, signature, signing_input })
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The JOSE header fields we act on (RFC 7515 §4.1).
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    jku: Option<String>,
    crit: Option<serde_json::Value>,
}

/// The payload claims CDS Hooks defines, plus `sub` and `nbf`, which some EHRs add.
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    iat: Option<f64>,
    nbf: Option<f64>,
    jti: Option<String>,
    tenant: Option<String>,
}

/// RFC 7519 §4.1.3: `aud` is one string or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn into_vec(self) -> Vec<String> {
        match self {
            Audience::One(aud) => vec![aud],
            Audience::Many(auds) => auds,
        }
    }
}

/// Whether `aud` names this request: the endpoint invoked itself, or a service endpoint under
/// `endpoints` that `endpoint_url` lies under (`…/{id}/feedback` lies under `…/{id}`), or the
/// client's explicitly configured shared audience. Trailing slashes are ignored; otherwise the
/// comparison is exact.
fn audience_matches(aud: &str, endpoints: &str, shared_audience: Option<&str>, endpoint_url: &str) -> bool {
    let aud = aud.trim_end_matches('/');
    let endpoint = endpoint_url.trim_end_matches('/');
    if shared_audience == Some(aud) || aud == endpoint {
        return true;
    }
    let under = |url: &str, base: &str| url.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'));
    under(aud, endpoints) && under(endpoint, aud)
}

/// RFC 7519 NumericDate: seconds, possibly fractional. Fractions are dropped.
fn numeric_date(value: f64) -> i64 {
    // `as` saturates for out-of-range floats, which then fail the time checks.
    value.floor() as i64
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Caps attacker-chosen strings before they reach an error message (and so the log).
fn clip(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_is_the_invoked_endpoint_or_the_service_of_its_feedback() {
        let base = "https://cds.example.org/cds-services";
        let service = "https://cds.example.org/cds-services/neurocds";
        let feedback = format!("{service}/feedback");
        assert!(audience_matches(base, base, None, base), "discovery's own URL opens discovery");
        assert!(audience_matches(&format!("{base}/"), base, None, base));
        assert!(audience_matches(service, base, None, service));
        assert!(audience_matches(service, base, None, &feedback));
        assert!(audience_matches(&feedback, base, None, &feedback));
        assert!(!audience_matches(base, base, None, service), "the discovery URL does not open a service");
        assert!(!audience_matches(base, base, None, &feedback));
        assert!(!audience_matches("https://cds.example.org/cds-services/other", base, None, service));
        assert!(!audience_matches("https://cds.example.org/cds-servicesX", base, None, "https://cds.example.org/cds-servicesX/a"));
        assert!(!audience_matches("https://evil.example.org/cds-services", base, None, service));
        assert!(!audience_matches(service, base, None, base), "a service aud does not open discovery");
    }

    #[test]
    fn an_explicit_shared_audience_opens_every_endpoint() {
        let base = "https://cds.example.org/cds-services";
        let shared = "https://cds.hospital.example/neuro";
        assert!(audience_matches(shared, base, Some(shared), &format!("{base}/neurocds")));
        assert!(audience_matches(shared, base, Some(shared), base));
        assert!(!audience_matches(base, base, Some(shared), &format!("{base}/neurocds")));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_exactly_one_token() {
        assert_eq!(bearer_token(Some("Bearer a.b.c")).ok(), Some("a.b.c"));
        assert_eq!(bearer_token(Some("bearer  a.b.c ")).ok(), Some("a.b.c"));
        assert!(matches!(bearer_token(Some("Basic dXNlcjpwdw==")), Err(AuthError::NotBearer)));
        assert!(matches!(bearer_token(Some("Bearer")), Err(AuthError::NotBearer)));
        assert!(matches!(bearer_token(Some("Bearer a.b.c d")), Err(AuthError::NotBearer)));
        assert!(matches!(bearer_token(None), Err(AuthError::MissingAuthorization)));
    }
}
