//! neurocds as a SMART App Launch 2.x app: the EHR launch that opens a case report from the
//! card's `smart` link. The EHR opens `/launch?iss=…&launch=…`; this module
//!
//! 1. accepts `iss` only when it is a FHIR server of a trusted client registered for SMART
//!    (`trust.clients[].smart`), and reaches it only through the egress address guard;
//! 2. discovers `iss/.well-known/smart-configuration` (authorization and token endpoints, the
//!    issuer and its keys; PKCE S256 must be offered);
//! 3. sends the browser to authorize with the least it needs — `launch openid fhirUser
//!    patient/Patient.rs`, the `launch` and `aud` parameters, PKCE S256, `state` and `nonce`;
//! 4. redeems the code, verifies the ID token, and reads the launch context that came with the
//!    token (`patient`, `appContext`). The access token is never kept, logged or used.
//!
//! The browser side (session, the report it opens) is in `web::launch`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use openidconnect::{
    AuthUrl, AuthenticationFlow, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet, ExtraTokenFields, IdTokenFields, IssuerUrl, JsonWebKeySet, JsonWebKeySetUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse, TokenUrl,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreResponseType, CoreRevocableToken,
        CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
    },
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use url::Url;

use super::sso::AllClaims;
use crate::{
    config::{Settings, SmartRegistration},
    egress::{EgressPolicy, oauth::OAuthHttp},
};

/// Where the EHR's authorization server sends the browser back.
pub const LAUNCH_CALLBACK_PATH: &str = "/launch/callback";
/// What the launch asks for: the launch context, who the user is, and reading the patient.
pub const SCOPES: [&str; 4] = ["launch", "openid", "fhirUser", "patient/Patient.rs"];
/// How long a discovered SMART configuration is used.
const CONFIGURATION_MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest wait for an EHR's authorization server.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The launch context SMART sends with the access token (CDS Hooks puts the card's
/// `appContext` there too).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LaunchContext {
    pub patient: Option<String>,
    #[serde(rename = "appContext")]
    pub app_context: Option<String>,
}
impl ExtraTokenFields for LaunchContext {}

type IdFields = IdTokenFields<AllClaims, LaunchContext, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type SmartTokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
type SmartClient = SmartClientWith<EndpointSet, EndpointSet>;
type SmartClientWith<HasAuthUrl, HasTokenUrl> = Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    SmartTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    HasAuthUrl,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    HasTokenUrl,
    EndpointNotSet,
>;

/// `.well-known/smart-configuration`, the fields we use.
#[derive(Debug, Deserialize)]
struct SmartConfiguration {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

/// A launch begun: what the callback must match. Kept in the (encrypted) session cookie only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLaunch {
    pub iss: String,
    pub client_iss: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub started_at: i64,
}

/// A launch completed: who, for which patient, with which card context.
#[derive(Debug, Clone)]
pub struct Launched {
    pub client_iss: String,
    pub patient: String,
    pub app_context: Option<String>,
    pub fhir_user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("`iss` is not a FHIR server of an EHR registered for SMART launch")]
    UnknownIss,
    #[error("the EHR's SMART configuration cannot be used: {0}")]
    Configuration(String),
    #[error("the EHR's authorization server refused the code: {0}")]
    TokenExchange(String),
    #[error("the EHR's authorization server sent no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("the launch named no patient")]
    NoPatient,
}

struct Discovered {
    client: Arc<SmartClient>,
    at: Instant,
}

/// The SMART launches of every registered EHR.
pub struct Launcher {
    registrations: HashMap<String, SmartRegistration>,
    egress: Arc<EgressPolicy>,
    redirect: RedirectUrl,
    http: OAuthHttp,
    discovered: RwLock<HashMap<String, Discovered>>,
}

impl Launcher {
    pub fn new(settings: &Settings, egress: Arc<EgressPolicy>) -> Result<Launcher, String> {
        let registrations = settings.trust.clients.iter().filter_map(|c| c.smart.clone().map(|s| (c.iss.clone(), s))).collect();
        let redirect = settings.server.public_base_url.join(LAUNCH_CALLBACK_PATH).map_err(|e| format!("server.public_base_url: {e}"))?;
        let http = egress.guard().http_client().timeout(TIMEOUT).build().map_err(|e| e.to_string())?;
        Ok(Launcher { registrations, egress, redirect: RedirectUrl::from_url(redirect), http: OAuthHttp::new(http, TIMEOUT), discovered: RwLock::new(HashMap::new()) })
    }

    /// Whether cards for client `iss` carry a SMART launch link.
    pub fn registered(&self, client_iss: &str) -> bool {
        self.registrations.contains_key(client_iss)
    }

    /// The registered client whose FHIR servers include `iss`.
    fn client_for(&self, iss: &Url) -> Option<(&String, &SmartRegistration)> {
        self.registrations.iter().find(|(client, _)| self.egress.fhir_server(client, iss).is_ok())
    }

    async fn client(&self, iss: &Url, registration: &SmartRegistration) -> Result<Arc<SmartClient>, LaunchError> {
        let key = iss.as_str().to_owned();
        if let Some(d) = self.discovered.read().await.get(&key)
            && d.at.elapsed() < CONFIGURATION_MAX_AGE
        {
            return Ok(d.client.clone());
        }
        let bad = |e: String| LaunchError::Configuration(e);
        let url = format!("{}/.well-known/smart-configuration", iss.as_str().trim_end_matches('/'));
        let config: SmartConfiguration = {
            use openidconnect::AsyncHttpClient;
            let request = openidconnect::http::Request::get(&url).header("accept", "application/json").body(Vec::new()).map_err(|e| bad(e.to_string()))?;
            let response = self.http.call(request).await.map_err(|e| bad(e.to_string()))?;
            if !response.status().is_success() {
                return Err(bad(format!("HTTP {}", response.status().as_u16())));
            }
            serde_json::from_slice(response.body()).map_err(|e| bad(format!("not a SMART configuration: {e}")))?
        };
        if !config.code_challenge_methods_supported.iter().any(|m| m == "S256") {
            return Err(bad("PKCE S256 is not offered".into()));
        }
        let issuer = IssuerUrl::new(config.issuer.ok_or_else(|| bad("no issuer (OpenID Connect is required)".into()))?).map_err(|e| bad(e.to_string()))?;
        let jwks_url = JsonWebKeySetUrl::new(config.jwks_uri.ok_or_else(|| bad("no jwks_uri".into()))?).map_err(|e| bad(e.to_string()))?;
        let keys = JsonWebKeySet::fetch_async(&jwks_url, &self.http).await.map_err(|e| bad(format!("its keys: {e}")))?;
        let mut client = SmartClientWith::<EndpointNotSet, EndpointNotSet>::new(ClientId::new(registration.client_id.clone()), issuer, keys)
            .set_auth_uri(AuthUrl::new(config.authorization_endpoint).map_err(|e| bad(e.to_string()))?)
            .set_token_uri(TokenUrl::new(config.token_endpoint).map_err(|e| bad(e.to_string()))?)
            .set_redirect_uri(self.redirect.clone());
        if !registration.client_secret.is_empty() {
            client = client.set_client_secret(ClientSecret::new(registration.client_secret.clone()));
        }
        let client = Arc::new(client);
        self.discovered.write().await.insert(key, Discovered { client: client.clone(), at: Instant::now() });
        Ok(client)
    }

    /// Where to send the browser to authorize the launch, and what its return must match.
    pub async fn begin(&self, iss: &str, launch: &str, now: i64) -> Result<(Url, PendingLaunch), LaunchError> {
        let iss_url = Url::parse(iss).map_err(|_| LaunchError::UnknownIss)?;
        let (client_iss, registration) = self.client_for(&iss_url).ok_or(LaunchError::UnknownIss)?;
        let client = self.client(&iss_url, registration).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(AuthenticationFlow::<CoreResponseType>::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("launch", launch)
            .add_extra_param("aud", iss);
        for scope in SCOPES.iter().filter(|s| **s != "openid") {
            request = request.add_scope(Scope::new((*scope).to_owned()));
        }
        let (url, state, nonce) = request.url();
        let pending = PendingLaunch { iss: iss.to_owned(), client_iss: client_iss.clone(), state: state.secret().clone(), nonce: nonce.secret().clone(), pkce_verifier: verifier.secret().clone(), started_at: now };
        Ok((url, pending))
    }

    /// Redeems the code (the caller has matched `state`), verifies the ID token with the
    /// launch's nonce, and returns the launch context. The access token is dropped here.
    pub async fn finish(&self, pending: &PendingLaunch, code: String) -> Result<Launched, LaunchError> {
        let iss_url = Url::parse(&pending.iss).map_err(|_| LaunchError::UnknownIss)?;
        let registration = self.registrations.get(&pending.client_iss).ok_or(LaunchError::UnknownIss)?;
        let client = self.client(&iss_url, registration).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| LaunchError::TokenExchange(e.to_string()))?;
        let id_token = response.id_token().ok_or(LaunchError::NoIdToken)?;
        let claims = id_token.claims(&client.id_token_verifier(), &Nonce::new(pending.nonce.clone())).map_err(|e| LaunchError::IdToken(e.to_string()))?;
        let fhir_user = claims.additional_claims().0.get("fhirUser").and_then(|v| v.as_str()).map(str::to_owned);
        let context = response.extra_fields().extra_fields().clone();
        let patient = context.patient.ok_or(LaunchError::NoPatient)?;
        Ok(Launched { client_iss: pending.client_iss.clone(), patient, app_context: context.app_context, fhir_user })
    }
}
