//! Staff single sign-on: the OpenID Connect authorization code flow with PKCE (S256), `state`
//! and `nonce`, against the hospital's identity provider (`[staff.sso]`). The flow itself is
//! `openidconnect`'s; this module holds what is ours:
//!
//! - **Discovery, late and refreshed.** The provider's metadata and keys are fetched on the
//!   first sign-in, not at start-up (hooks must not wait on the staff IdP), and again after
//!   [`METADATA_MAX_AGE`] or when an ID token names a key we lack (key rotation).
//! - **Roles from a claim.** The ID token's `roles_claim` (a name or a dotted path, string or
//!   array) is mapped to [`Role`] by the configured group lists; no match is a signed-in user
//!   without a role, who is shown the 403 page.
//!
//! The browser side (cookies, return paths, pages) is in `web::signin`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
        CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::RwLock;

use super::roles::Role;
use crate::{config::SsoSettings, egress::oauth::OAuthHttp};

/// Where the identity provider sends the browser back (registered with it as the redirect URI).
pub const CALLBACK_PATH: &str = "/auth/callback";
/// How long discovered metadata (and the keys with it) is used before it is fetched again.
pub const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// The shortest time between two discoveries forced by an unknown key.
const REDISCOVER_AFTER: Duration = Duration::from_secs(30);

/// Every claim of the ID token, so that the roles claim can be any of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllClaims(pub serde_json::Map<String, Value>);
impl AdditionalClaims for AllClaims {}

type IdFields = IdTokenFields<AllClaims, EmptyExtraTokenFields, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type SsoTokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
type SsoClient = Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    SsoTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A sign-in begun: what the callback must match. Kept in the (encrypted) session cookie only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// The page to return to (already checked to be one of ours).
    pub return_to: String,
    /// Unix seconds; a sign-in left longer than [`PENDING_LIFETIME_S`] is refused.
    pub started_at: i64,
}

/// How long a begun sign-in may take at the identity provider.
pub const PENDING_LIFETIME_S: i64 = 600;

/// Who signed in, as the identity provider said.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub subject: String,
    pub name: Option<String>,
    pub role: Option<Role>,
}

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the identity provider cannot be discovered: {0}")]
    Discovery(String),
    #[error("configuration: `staff.sso.{key}`: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("the identity provider refused the authorization code: {0}")]
    TokenExchange(String),
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    IdToken(String),
}

struct Discovered {
    client: Arc<SsoClient>,
    at: Instant,
}

/// The staff identity provider, as a client of it.
pub struct Sso {
    settings: SsoSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: OAuthHttp,
    discovered: RwLock<Option<Discovered>>,
}

impl Sso {
    /// Checks the settings; contacts nobody.
    pub fn new(settings: &SsoSettings, public_base_url: &url::Url, http: OAuthHttp) -> Result<Sso, SsoError> {
        let issuer = IssuerUrl::new(settings.issuer_url.clone()).map_err(|e| SsoError::Config { key: "issuer_url", reason: e.to_string() })?;
        let callback = public_base_url.join(CALLBACK_PATH).map_err(|e| SsoError::Config { key: "issuer_url", reason: format!("server.public_base_url: {e}") })?;
        if settings.client_id.is_empty() {
            return Err(SsoError::Config { key: "client_id", reason: "is empty".into() });
        }
        if settings.roles_claim.is_empty() {
            return Err(SsoError::Config { key: "roles_claim", reason: "is empty".into() });
        }
        Ok(Sso { settings: settings.clone(), issuer, redirect: RedirectUrl::from_url(callback), http, discovered: RwLock::new(None) })
    }

    /// The provider's issuer identifier, as configured.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.settings.session_lifetime_s)
    }

    /// The client for the provider, discovering it when it is unknown, stale, or (`force`) when
    /// a token named a key it lacks and the last discovery is not too recent.
    async fn client(&self, force: bool) -> Result<Arc<SsoClient>, SsoError> {
        {
            let known = self.discovered.read().await;
            if let Some(d) = known.as_ref() {
                let fresh = d.at.elapsed() < METADATA_MAX_AGE;
                if fresh && !(force && d.at.elapsed() >= REDISCOVER_AFTER) {
                    return Ok(d.client.clone());
                }
            }
        }
        let mut known = self.discovered.write().await;
        if let Some(d) = known.as_ref()
            && d.at.elapsed() < REDISCOVER_AFTER
        {
            return Ok(d.client.clone());
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await.map_err(|e| SsoError::Discovery(error_chain(&e)))?;
        let secret = (!self.settings.client_secret.is_empty()).then(|| ClientSecret::new(self.settings.client_secret.clone()));
        let client = Arc::new(SsoClient::from_provider_metadata(metadata, ClientId::new(self.settings.client_id.clone()), secret).set_redirect_uri(self.redirect.clone()));
        *known = Some(Discovered { client: client.clone(), at: Instant::now() });
        Ok(client)
    }

    /// Where to send the browser to sign in, and what its return must match.
    pub async fn begin(&self, return_to: String, now: i64) -> Result<(url::Url, PendingSignIn), SsoError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(AuthenticationFlow::<CoreResponseType>::AuthorizationCode, CsrfToken::new_random, Nonce::new_random).set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let pending = PendingSignIn { state: state.secret().clone(), nonce: nonce.secret().clone(), pkce_verifier: verifier.secret().clone(), return_to, started_at: now };
        Ok((url, pending))
    }

    /// Redeems the code the browser brought back (the caller has matched `state`) and verifies
    /// the ID token: signature, issuer, audience, expiry and the sign-in's nonce.
    pub async fn finish(&self, pending: &PendingSignIn, code: String) -> Result<SignedIn, SsoError> {
        let client = self.client(false).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| SsoError::Discovery(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::TokenExchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(SsoError::NoIdToken)?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            // The provider may have rotated its keys since we discovered it.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                let client = self.client(true).await?;
                id_token.claims(&client.id_token_verifier(), &nonce).map_err(|e| SsoError::IdToken(e.to_string()))?.clone()
            }
            Err(e) => return Err(SsoError::IdToken(e.to_string())),
        };
        let name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()).or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()));
        let groups = groups_at(&claims.additional_claims().0, &self.settings.roles_claim);
        Ok(SignedIn { subject: claims.subject().as_str().to_owned(), name, role: role_for(&groups, &self.settings) })
    }
}

/// The strings at a claim name or dotted path: one string, or an array of them.
fn groups_at(claims: &serde_json::Map<String, Value>, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let first = parts.next().and_then(|p| claims.get(p));
    let value = parts.fold(first, |v, p| v.and_then(|v| v.get(p)));
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The neurocds role the groups give: compliance wins when both match (its views include the
/// other's); none is a user without a role.
fn role_for(groups: &[String], settings: &SsoSettings) -> Option<Role> {
    let member = |of: &[String]| groups.iter().any(|g| of.contains(g));
    if member(&settings.compliance_groups) {
        Some(Role::Compliance)
    } else if member(&settings.neuro_oncology_groups) {
        Some(Role::NeuroOncology)
    } else {
        None
    }
}

/// An error with its causes, for the log and the sign-in failure page (no token is in them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> SsoSettings {
        SsoSettings {
            issuer_url: "https://idp.example.org".into(),
            client_id: "neurocds".into(),
            client_secret: String::new(),
            scopes: vec![],
            roles_claim: "groups".into(),
            compliance_groups: vec!["neurocds-compliance".into()],
            neuro_oncology_groups: vec!["neurocds-neuro-oncology".into(), "neuro-oncology".into()],
            session_lifetime_s: 60,
            session_key: String::new(),
        }
    }

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn groups_are_read_from_a_name_or_a_dotted_path_as_one_string_or_many() {
        let c = claims(json!({ "groups": ["a", "b", 3], "realm_access": { "roles": ["r"] }, "role": "x" }));
        assert_eq!(groups_at(&c, "groups"), ["a", "b"]);
        assert_eq!(groups_at(&c, "realm_access.roles"), ["r"]);
        assert_eq!(groups_at(&c, "role"), ["x"]);
        assert!(groups_at(&c, "missing").is_empty());
        assert!(groups_at(&c, "realm_access.missing").is_empty());
    }

    #[test]
    fn groups_map_to_one_role_compliance_first_and_unknown_groups_to_none() {
        let s = settings();
        let role = |g: &[&str]| role_for(&g.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &s);
        assert_eq!(role(&["neuro-oncology"]), Some(Role::NeuroOncology));
        assert_eq!(role(&["staff", "neurocds-compliance"]), Some(Role::Compliance));
        assert_eq!(role(&["neurocds-neuro-oncology", "neurocds-compliance"]), Some(Role::Compliance));
        assert_eq!(role(&["radiology"]), None);
        assert_eq!(role(&[]), None);
    }

    #[test]
    fn a_client_id_and_a_roles_claim_are_required_and_nobody_is_contacted_to_check_them() {
        let base = url::Url::parse("https://neurocds.example.org/").expect("a URL");
        let http = OAuthHttp::new(reqwest::Client::new(), Duration::from_secs(1));
        assert!(Sso::new(&settings(), &base, http.clone()).is_ok());
        assert!(matches!(Sso::new(&SsoSettings { client_id: String::new(), ..settings() }, &base, http.clone()), Err(SsoError::Config { key: "client_id", .. })));
        assert!(matches!(Sso::new(&SsoSettings { roles_claim: String::new(), ..settings() }, &base, http), Err(SsoError::Config { key: "roles_claim", .. })));
    }
}
