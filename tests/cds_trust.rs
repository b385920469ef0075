//! CDS Hooks 2.0 "Trusting CDS Clients": the service accepts only JWTs that a configured EHR
//! signed for this endpoint, recently, once.
//!
//! Every token here is signed for real by `scripts/ehr_token.py` (PyJWT) with keys generated
//! when the test runs, and key sets are served over real HTTP on loopback by a small server
//! that counts how often each set is fetched. Test names say the rule; numbers like `r201` are
//! row IDs of `cds-hooks-2.0-requirements.tsv` (the Inferno requirement list).
//!
//! Needs the tools venv (`~/.cache/neurocds/tools-venv`, or `NEUROCDS_TOOLS_PYTHON`).
//! Run: `cargo test --release --test cds_trust`

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use neurocds::{
    cds::auth::{AuthError, Verifier, VerifiedClient},
    config::Settings,
};
use serde_json::{Value, json};

const ISS: &str = "https://ehr.example.org";
/// `<public_base_url>/cds-services` with the default `public_base_url`.
const DISCOVERY: &str = "http://127.0.0.1:8080/cds-services";
const SERVICE: &str = "http://127.0.0.1:8080/cds-services/neurocds-order-sign";

// ---------------------------------------------------------------------------------------------
// The EHR side: keys and tokens from scripts/ehr_token.py.

/// An EHR's key directory (private keys, public JWKs, `jwks.json`), deleted after the test.
struct Ehr {
    dir: tempfile::TempDir,
}

impl Ehr {
    /// Generates one key per `(kid, alg)`; all are published in `jwks.json` unless the kid
    /// starts with `unpublished-`.
    fn with_keys(keys: &[(&str, &str)]) -> Ehr {
        let ehr = Ehr { dir: tempfile::tempdir().expect("temp dir") };
        for (kid, alg) in keys {
            let mut args = vec!["keygen", "--kid", kid, "--alg", alg];
            if kid.starts_with("unpublished-") {
                args.push("--unpublished");
            }
            ehr.run(&args);
        }
        ehr
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The published JWK Set, as JSON text.
    fn jwks(&self) -> String {
        std::fs::read_to_string(self.dir().join("jwks.json")).expect("jwks.json written by keygen")
    }

    /// A JWK Set with exactly these kids.
    fn jwks_of(&self, kids: &[&str]) -> String {
        let out = self.dir().join("chosen-jwks.json");
        let mut args = vec!["jwks", "--out", out.to_str().expect("utf-8 temp path")];
        for kid in kids {
            args.extend(["--kid", kid]);
        }
        self.run(&args);
        std::fs::read_to_string(out).expect("jwks written")
    }

    /// A token signed with key `kid` for `aud`, plus any further `sign` options.
    fn sign(&self, kid: &str, aud: &str, extra: &[&str]) -> String {
        let mut args = vec!["sign", "--kid", kid, "--aud", aud, "--iss", ISS, "--sub", "cds-client-7"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn run(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ehr_token.py");
        let (command, rest) = args.split_first().expect("a subcommand");
        let output = Command::new(python())
            .arg(script)
            .arg(command)
            .arg("--dir")
            .arg(self.dir())
            .args(rest)
            .output()
            .expect("run scripts/ehr_token.py with the tools venv python");
        assert!(output.status.success(), "ehr_token.py {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8 output").trim().to_string()
    }
}

fn python() -> PathBuf {
    if let Ok(path) = std::env::var("NEUROCDS_TOOLS_PYTHON") {
        return path.into();
    }
    let home = std::env::var("HOME").expect("HOME set");
    Path::new(&home).join(".cache/neurocds/tools-venv/bin/python")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------------------------
// The EHR's key server: serves JWK Sets on loopback and counts fetches per path.

#[derive(Clone)]
struct KeyServer {
    addr: SocketAddr,
    bodies: Arc<Mutex<HashMap<String, String>>>,
    fetches: Arc<Mutex<HashMap<String, usize>>>,
}

impl KeyServer {
    fn start() -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let server = KeyServer {
            addr: listener.local_addr().expect("local addr"),
            bodies: Arc::default(),
            fetches: Arc::default(),
        };
        let handler = server.clone();
        // Lives until the test process ends; each test has its own server on its own port.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                handler.answer(stream);
            }
        });
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn publish(&self, path: &str, body: String) {
        self.bodies.lock().expect("bodies lock").insert(path.to_string(), body);
    }

    fn fetches(&self, path: &str) -> usize {
        self.fetches.lock().expect("fetches lock").get(path).copied().unwrap_or(0)
    }

    fn answer(&self, stream: TcpStream) {
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        // Skip the request headers; a GET has no body.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
        *self.fetches.lock().expect("fetches lock").entry(path.clone()).or_default() += 1;
        let body = self.bodies.lock().expect("bodies lock").get(&path).cloned();
        let response = match body {
            Some(body) => format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
            None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
        };
        let mut stream = stream;
        let _ = stream.write_all(response.as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// The service side.

/// Settings from `config/default.toml` with these `trust.clients`.
fn settings(clients: Value) -> Settings {
    // The key servers below listen on loopback.
    settings_allowing(clients, &["127.0.0.0/8"])
}

/// Settings whose egress may reach only `networks` among internal addresses.
fn settings_allowing(clients: Value, networks: &[&str]) -> Settings {
    let defaults = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    Settings::from_figment(
        Figment::from(Toml::file_exact(defaults))
            .merge(Serialized::default("database.url", "postgres://unused@localhost/unused"))
            .merge(Serialized::default("egress.allowed_networks", networks))
            .merge(Serialized::default("trust.clients", clients)),
    )
    .expect("test settings are valid")
}

fn verifier(clients: Value) -> Verifier {
    Verifier::new(&settings(clients)).expect("verifier builds")
}

/// A verifier trusting `ISS` with the EHR's published keys given inline.
fn inline_verifier(ehr: &Ehr) -> Verifier {
    verifier(json!([{ "iss": ISS, "jwks": ehr.jwks() }]))
}

async fn refused(verifier: &Verifier, token: &str, endpoint: &str) -> AuthError {
    match verifier.verify(Some(&bearer(token)), endpoint).await {
        Ok(client) => panic!("token was accepted: {client:?}"),
        Err(e) => e,
    }
}

async fn accepted(verifier: &Verifier, token: &str, endpoint: &str) -> VerifiedClient {
    match verifier.verify(Some(&bearer(token)), endpoint).await {
        Ok(client) => client,
        Err(e) => panic!("token was refused: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Accepted tokens.

/// r176, r205: an ES384 JWT signed by a trusted EHR authenticates it.
#[tokio::test]
async fn es384_token_signed_by_a_trusted_ehr_is_accepted() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &["--jti", "nonce-1", "--tenant", "hospital-7"]);
    let client = accepted(&verifier, &token, DISCOVERY).await;
    assert_eq!(
        client,
        VerifiedClient {
            iss: ISS.into(),
            sub: Some("cds-client-7".into()),
            jti: "nonce-1".into(),
            tenant: Some("hospital-7".into()),
            silent: false,
            valid_until: client.valid_until,
        }
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(client.valid_until > now && client.valid_until <= now + 300 + 60, "remembered no longer than the token can pass");
}

/// A key set larger than any real one (256 KiB) is refused unread, whatever it holds: a
/// misbehaving key server cannot make the service allocate what it likes.
#[tokio::test]
async fn a_key_set_past_the_size_limit_is_refused_unread() {
    let ehr = Ehr::with_keys(&[("rs384-a", "RS384")]);
    let server = KeyServer::start();
    let jwks = ehr.jwks();
    let padded = format!("{{\"padding\": \"{}\", {}", "x".repeat(300 * 1024), jwks.trim_start().trim_start_matches('{'));
    server.publish("/jwks.json", padded);
    let verifier = verifier(json!([{ "iss": ISS, "jwks_url": server.url("/jwks.json") }]));

    let e = refused(&verifier, &ehr.sign("rs384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(&e, AuthError::KeyFetch { reason, .. } if reason.contains("larger than 262144 bytes")), "{e}");
}

/// Key sets are fetched through the egress address guard: a key URL on an internal address
/// outside `egress.allowed_networks` stops start-up, naming the setting.
#[test]
fn a_key_url_on_an_internal_address_outside_the_allowed_networks_stops_start_up() {
    let e = Verifier::new(&settings_allowing(json!([{ "iss": ISS, "jwks_url": "http://10.20.30.40/jwks.json" }]), &[])).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("trust.clients[0].jwks_url") && e.contains("internal address")), "{e:?}");
    let e = Verifier::new(&settings_allowing(json!([{ "iss": ISS, "allowed_jku": ["https://169.254.169.254/keys"] }]), &[])).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("allowed_jku")), "{e:?}");
    assert!(Verifier::new(&settings_allowing(json!([{ "iss": ISS, "jwks_url": "http://10.20.30.40/jwks.json" }]), &["10.20.30.0/24"])).is_ok());
}

/// …and a key URL whose name resolves only to such an address is refused when it is fetched,
/// before any request leaves (DNS rebinding of an IdP's name gets nowhere).
#[tokio::test]
async fn a_key_url_whose_name_resolves_to_an_internal_address_is_never_fetched() {
    let ehr = Ehr::with_keys(&[("rs384-a", "RS384")]);
    let server = KeyServer::start();
    server.publish("/jwks.json", ehr.jwks());
    let url = format!("http://localhost:{}/jwks.json", server.addr.port());
    let verifier = Verifier::new(&settings_allowing(json!([{ "iss": ISS, "jwks_url": url }]), &[])).expect("a name is checked when resolved");

    let e = refused(&verifier, &ehr.sign("rs384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(&e, AuthError::KeyFetch { .. }), "{e}");
    assert_eq!(server.fetches("/jwks.json"), 0, "no request reached the key server");
}

/// r205, r199: an RS384 JWT is checked against the JWK Set at the client's configured
/// `jwks_url` (keys exchanged out of band), which is fetched once and then cached.
#[tokio::test]
async fn rs384_token_is_verified_with_the_key_set_at_jwks_url_which_is_cached() {
    let ehr = Ehr::with_keys(&[("rs384-a", "RS384")]);
    let server = KeyServer::start();
    server.publish("/jwks.json", ehr.jwks());
    let verifier = verifier(json!([{ "iss": ISS, "jwks_url": server.url("/jwks.json") }]));

    accepted(&verifier, &ehr.sign("rs384-a", DISCOVERY, &[]), DISCOVERY).await;
    accepted(&verifier, &ehr.sign("rs384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert_eq!(server.fetches("/jwks.json"), 1, "the second token is verified from the cache");
}

/// r189: `aud` may be an array; it must contain the invoked endpoint.
#[tokio::test]
async fn aud_array_naming_the_invoked_service_is_accepted() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", "https://elsewhere.example.org/cds-services", &["--aud", SERVICE]);
    accepted(&verifier, &token, SERVICE).await;
}

/// r196: the spec's `aud` for a service call is that service's URL; it also covers the
/// service's feedback endpoint below it.
#[tokio::test]
async fn service_url_as_aud_opens_that_service_and_its_feedback_only() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    accepted(&verifier, &ehr.sign("es384-a", SERVICE, &[]), SERVICE).await;
    accepted(&verifier, &ehr.sign("es384-a", SERVICE, &[]), &format!("{SERVICE}/feedback")).await;

    let other_service = format!("{DISCOVERY}/another-service");
    let e = refused(&verifier, &ehr.sign("es384-a", SERVICE, &[]), &other_service).await;
    assert!(matches!(e, AuthError::WrongAudience { .. }), "{e}");
    let e = refused(&verifier, &ehr.sign("es384-a", SERVICE, &[]), DISCOVERY).await;
    assert!(matches!(e, AuthError::WrongAudience { .. }), "{e}");
}

/// The spec's `aud` is the endpoint invoked: a token minted for discovery opens discovery and
/// nothing else, so one captured discovery token cannot call a service or file feedback.
#[tokio::test]
async fn discovery_url_as_aud_opens_discovery_only() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    accepted(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;
    for endpoint in [SERVICE.to_string(), format!("{SERVICE}/feedback")] {
        let e = refused(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), &endpoint).await;
        assert!(matches!(e, AuthError::WrongAudience { .. }), "{endpoint}: {e}");
    }
}

#[tokio::test]
async fn a_silent_client_is_reported_as_silent() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = verifier(json!([{ "iss": ISS, "jwks": ehr.jwks(), "silent": true }]));
    let client = accepted(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(client.silent);
}

#[tokio::test]
async fn an_explicit_audience_is_accepted_at_every_endpoint_of_that_client() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let audience = "https://cds.hospital.example/neuro/cds-services";
    let verifier = verifier(json!([{ "iss": ISS, "jwks": ehr.jwks(), "audience": audience }]));
    accepted(&verifier, &ehr.sign("es384-a", audience, &[]), SERVICE).await;
    accepted(&verifier, &ehr.sign("es384-a", audience, &[]), DISCOVERY).await;
    let e = refused(&verifier, &ehr.sign("es384-a", "https://elsewhere.example/cds-services", &[]), DISCOVERY).await;
    assert!(matches!(e, AuthError::WrongAudience { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Algorithms.

/// r201: unsecured JWTs (`alg: none`) are never accepted.
#[tokio::test]
async fn unsigned_token_with_alg_none_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &["--forge", "none"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::Malformed(_) | AuthError::UnsupportedAlgorithm { .. }), "{e}");
    // Even with a signature part present, `none` is refused by name.
    let e = refused(&verifier, &format!("{token}c2lnbmF0dXJl"), DISCOVERY).await;
    assert!(matches!(&e, AuthError::UnsupportedAlgorithm { alg } if alg == "none"), "{e}");
}

/// r203: no symmetric algorithms - in particular not the algorithm-confusion attack that uses
/// the EHR's public key as an HMAC secret.
#[tokio::test]
async fn hs256_token_using_the_public_key_as_hmac_secret_is_refused() {
    let ehr = Ehr::with_keys(&[("rs384-a", "RS384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("rs384-a", DISCOVERY, &["--forge", "hs256-with-public-key"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(&e, AuthError::UnsupportedAlgorithm { alg } if alg == "HS256"), "{e}");
}

/// r207: the service decides which algorithms it trusts; ES256 only when configured.
#[tokio::test]
async fn es256_is_refused_unless_the_client_is_configured_for_it() {
    let ehr = Ehr::with_keys(&[("es256-a", "ES256")]);
    let default_algorithms = inline_verifier(&ehr);
    let e = refused(&default_algorithms, &ehr.sign("es256-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(e, AuthError::AlgorithmNotAllowed { .. }), "{e}");

    let es256_allowed = verifier(json!([{ "iss": ISS, "jwks": ehr.jwks(), "algorithms": ["ES384", "ES256"] }]));
    accepted(&es256_allowed, &ehr.sign("es256-a", DISCOVERY, &[]), DISCOVERY).await;
}

#[tokio::test]
async fn a_key_whose_type_does_not_match_the_algorithm_is_not_used() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384"), ("rs384-a", "RS384")]);
    let verifier = inline_verifier(&ehr);
    // Signed RS384, but the header points at the EC key.
    let token = ehr.sign("rs384-a", DISCOVERY, &["--header", "kid=es384-a"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::KeyTypeMismatch { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Claims.

/// r189, r196: a token for another service's URL is not valid here.
#[tokio::test]
async fn token_for_another_audience_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", "https://other-cds.example.org/cds-services", &[]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::WrongAudience { .. }), "{e}");
}

#[tokio::test]
async fn expired_token_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    // exp two minutes ago: past the 60 s clock skew.
    let token = ehr.sign("es384-a", DISCOVERY, &["--exp-in", "-120"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::Expired { .. }), "{e}");
}

#[tokio::test]
async fn token_expired_by_less_than_the_clock_skew_is_still_accepted() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &["--exp-in", "-20"]);
    accepted(&verifier, &token, DISCOVERY).await;
}

#[tokio::test]
async fn token_issued_in_the_future_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &["--iat-offset", "600"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::IssuedInFuture { .. }), "{e}");
}

#[tokio::test]
async fn token_older_than_max_token_age_is_refused_even_if_not_expired() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    // Issued 20 minutes ago, valid for an hour: older than max_token_age_s (300) + skew.
    let token = ehr.sign("es384-a", DISCOVERY, &["--iat-offset", "-1200", "--exp-in", "3600"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::TooOld { .. }), "{e}");
}

#[tokio::test]
async fn token_not_yet_valid_by_nbf_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &["--nbf-offset", "600"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::NotYetValid { .. }), "{e}");
    // Epic sets nbf a few minutes before iat; that is fine.
    accepted(&verifier, &ehr.sign("es384-a", DISCOVERY, &["--nbf-offset", "-300"]), DISCOVERY).await;
}

/// The spec makes `jti`, `exp` and `iat` REQUIRED; a token without one is refused.
#[tokio::test]
async fn token_without_jti_exp_or_iat_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    for (flag, claim) in [("--no-jti", "jti"), ("--no-exp", "exp"), ("--no-iat", "iat")] {
        let token = ehr.sign("es384-a", DISCOVERY, &[flag]);
        let e = refused(&verifier, &token, DISCOVERY).await;
        assert!(matches!(&e, AuthError::MissingClaim { claim: c, .. } if *c == claim), "{flag}: {e}");
    }
}

/// The `jti` nonce protects against replay: the same token is accepted once.
#[tokio::test]
async fn replayed_token_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &[]);
    accepted(&verifier, &token, DISCOVERY).await;
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::Replayed { .. }), "{e}");
    // A clone shares the replay cache (actix workers each hold one).
    let e = refused(&verifier.clone(), &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::Replayed { .. }), "{e}");
}

/// A refused token does not use up its `jti`: only tokens that pass every check are recorded.
#[tokio::test]
async fn refused_token_does_not_burn_its_jti() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let wrong_endpoint = ehr.sign("es384-a", SERVICE, &["--jti", "shared-nonce"]);
    refused(&verifier, &wrong_endpoint, DISCOVERY).await;
    accepted(&verifier, &wrong_endpoint, SERVICE).await;
}

/// Changing a claim after signing breaks the signature.
#[tokio::test]
async fn tampered_payload_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &["--tamper", "sub=someone-else"]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::BadSignature { .. }), "{e}");
}

#[tokio::test]
async fn token_signed_by_another_key_with_the_same_kid_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let impostor = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let e = refused(&verifier, &impostor.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(e, AuthError::BadSignature { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Issuers, key sets, jku.

/// r195: only allowlisted issuers are trusted.
#[tokio::test]
async fn token_from_an_unknown_issuer_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = verifier(json!([{ "iss": "https://another-ehr.example.org", "jwks": ehr.jwks() }]));
    let e = refused(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(&e, AuthError::UnknownIssuer { iss } if iss == ISS), "{e}");
}

/// An unknown kid makes the service refetch the key set once (it may be a rotation), then
/// refuse; further unknown kids within a minute do not refetch (no kid flooding).
#[tokio::test]
async fn unknown_kid_refetches_the_key_set_once_then_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384"), ("unpublished-x", "ES384")]);
    let server = KeyServer::start();
    server.publish("/jwks.json", ehr.jwks());
    let verifier = verifier(json!([{ "iss": ISS, "jwks_url": server.url("/jwks.json") }]));
    accepted(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert_eq!(server.fetches("/jwks.json"), 1);

    let e = refused(&verifier, &ehr.sign("unpublished-x", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(e, AuthError::UnknownKid { .. }), "{e}");
    assert_eq!(server.fetches("/jwks.json"), 2, "the unknown kid triggered one refetch");

    let e = refused(&verifier, &ehr.sign("unpublished-x", DISCOVERY, &["--header", "kid=made-up"]), DISCOVERY).await;
    assert!(matches!(e, AuthError::UnknownKid { .. }), "{e}");
    assert_eq!(server.fetches("/jwks.json"), 2, "a second unknown kid within a minute does not refetch");
}

/// r199: key rotation - a new kid published in the EHR's key set is picked up at once.
#[tokio::test]
async fn rotated_key_is_accepted_after_the_key_set_is_refetched() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384"), ("unpublished-b", "ES384")]);
    let server = KeyServer::start();
    server.publish("/jwks.json", ehr.jwks_of(&["es384-a"]));
    let verifier = verifier(json!([{ "iss": ISS, "jwks_url": server.url("/jwks.json") }]));
    accepted(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;

    server.publish("/jwks.json", ehr.jwks_of(&["unpublished-b"]));
    accepted(&verifier, &ehr.sign("unpublished-b", DISCOVERY, &[]), DISCOVERY).await;
    assert_eq!(server.fetches("/jwks.json"), 2);
}

/// r195: a `jku` not on the client's allowlist is refused and never fetched (no SSRF, no
/// attacker-supplied keys).
#[tokio::test]
async fn jku_not_on_the_allowlist_is_refused_without_being_fetched() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let server = KeyServer::start();
    server.publish("/jwks.json", ehr.jwks());
    server.publish("/attacker-jwks.json", ehr.jwks());
    let verifier = verifier(json!([{ "iss": ISS, "allowed_jku": [server.url("/jwks.json")] }]));
    let token = ehr.sign("es384-a", DISCOVERY, &["--jku", &server.url("/attacker-jwks.json")]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::UntrustedJku { .. }), "{e}");
    assert_eq!(server.fetches("/attacker-jwks.json"), 0);
    // Prefix tricks do not pass: the match is exact.
    let token = ehr.sign("es384-a", DISCOVERY, &["--jku", &format!("{}?x", server.url("/jwks.json"))]);
    let e = refused(&verifier, &token, DISCOVERY).await;
    assert!(matches!(e, AuthError::UntrustedJku { .. }), "{e}");
}

/// r195, r199: a `jku` on the allowlist names where the keys are; they are fetched and cached.
#[tokio::test]
async fn jku_on_the_allowlist_is_fetched_and_its_key_accepted() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let server = KeyServer::start();
    server.publish("/jwks.json", ehr.jwks());
    let jku = server.url("/jwks.json");
    let verifier = verifier(json!([{ "iss": ISS, "allowed_jku": [jku] }]));
    accepted(&verifier, &ehr.sign("es384-a", DISCOVERY, &["--jku", &jku]), DISCOVERY).await;
    accepted(&verifier, &ehr.sign("es384-a", DISCOVERY, &["--jku", &jku]), DISCOVERY).await;
    assert_eq!(server.fetches("/jwks.json"), 1);

    let e = refused(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(e, AuthError::MissingJku { .. }), "without jku there is nowhere to look: {e}");
}

#[tokio::test]
async fn unreachable_key_set_is_refused_as_a_fetch_failure() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let server = KeyServer::start();
    let verifier = verifier(json!([{ "iss": ISS, "jwks_url": server.url("/missing.json") }]));
    let e = refused(&verifier, &ehr.sign("es384-a", DISCOVERY, &[]), DISCOVERY).await;
    assert!(matches!(&e, AuthError::KeyFetch { reason, .. } if reason.contains("404")), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The Authorization header.

/// r178: the JWT comes as `Authorization: Bearer <JWT>`; anything else is refused.
#[tokio::test]
async fn missing_or_garbled_authorization_header_is_refused() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let verifier = inline_verifier(&ehr);
    let token = ehr.sign("es384-a", DISCOVERY, &[]);

    let e = verifier.verify(None, DISCOVERY).await.expect_err("no header");
    assert!(matches!(e, AuthError::MissingAuthorization), "{e}");
    for (header, what) in [
        (format!("Basic {token}"), "another scheme"),
        (token.clone(), "no scheme"),
        ("Bearer ".to_string(), "no token"),
        ("Bearer not-a-jwt".to_string(), "one part"),
        ("Bearer a.b.c".to_string(), "parts that are not base64url JSON"),
        (format!("Bearer {token}.extra"), "four parts"),
    ] {
        let e = verifier.verify(Some(&header), DISCOVERY).await.expect_err(what);
        assert!(matches!(e, AuthError::NotBearer | AuthError::Malformed(_)), "{what}: {e}");
    }
    // The token itself never appears in the reason that gets logged.
    let e = refused(&verifier, &format!("{token}x"), DISCOVERY).await;
    assert!(!e.to_string().contains(&token[..20]), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[test]
fn bad_inline_key_set_stops_start_up_naming_the_client() {
    let ehr = Ehr::with_keys(&[("es384-a", "ES384")]);
    let good = json!({ "iss": ISS, "jwks": ehr.jwks() });
    let build = |second: Value| {
        Verifier::new(&settings(json!([good, second]))).err().map(|e| e.to_string())
    };

    let e = build(json!({ "iss": "https://b.example.org", "jwks": "{not json" })).expect("garbage jwks refused");
    assert!(e.contains("trust.clients[1].jwks"), "{e}");

    let private = std::fs::read_to_string(ehr.dir().join("keys/es384-a.jwk.json")).expect("jwk");
    let mut private: Value = serde_json::from_str(&private).expect("jwk json");
    private["d"] = json!("c2VjcmV0");
    let e = build(json!({ "iss": "https://b.example.org", "jwks": json!({ "keys": [private] }).to_string() }))
        .expect("private key refused");
    assert!(e.contains("trust.clients[1].jwks") && e.contains("private"), "{e}");

    let e = build(json!({ "iss": ISS, "jwks": ehr.jwks() })).expect("duplicate iss refused");
    assert!(e.contains("trust.clients[1].iss"), "{e}");

    let e = build(json!({ "iss": "https://b.example.org", "jwks_url": "ftp://keys.example.org/jwks" })).expect("ftp refused");
    assert!(e.contains("trust.clients[1].jwks_url"), "{e}");
}
