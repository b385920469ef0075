//! Test harness: a real neurocds on a random port, its own PostgreSQL database, real signed EHR
//! tokens, and the real peers started by `scripts/peers.sh` (Orthanc, sekmet FHIR).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use neurocds::{config::Settings, startup::Application};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ISS: &str = "https://ehr.test.neurocds.org";

/// An environment variable the peers script sets; a clear failure when it is missing.
pub fn peer(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the tests through `make test` (it starts the peers), or `eval \"$(scripts/peers.sh start)\"` first"))
}

pub fn python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("NEUROCDS_CACHE").unwrap_or(format!("{home}/.cache/neurocds"));
    PathBuf::from(cache)
}

/// Where tests keep what people look at afterwards (the case-report screenshot):
/// `$NEUROCDS_TEST_ARTEFACTS`, else `$CARGO_TARGET_DIR/test-artefacts` (scripts/env.sh puts the
/// target dir in the cache, outside the checkout), else `test-artefacts/` in the target dir that
/// holds this test binary.
pub fn artefacts_dir() -> PathBuf {
    let dir = std::env::var_os("NEUROCDS_TEST_ARTEFACTS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("test-artefacts")))
        .or_else(|| {
            // <target>/<profile>/deps/<test binary>
            let exe = std::env::current_exe().ok()?;
            Some(exe.ancestors().nth(3)?.join("test-artefacts"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("neurocds-test-artefacts"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn tools_python() -> PathBuf {
    python().join("tools-venv/bin/python")
}

fn torch_python() -> PathBuf {
    python().join("torch-venv/bin/python")
}

/// A small randomly initialised ensemble for wiring tests, made once per test run.
pub fn tiny_ensemble() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("neurocds-tiny-{}", std::process::id()));
        let ok = Command::new(torch_python())
            .args(["scripts/testdata/tiny_ensemble.py"])
            .arg(&dir)
            .args(["--members", "3", "--shape", "16"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "could not make the tiny test ensemble (torch venv missing? run scripts/bootstrap.sh)");
        dir
    })
}

/// The EHR side: signing keys (made once) and a signer.
pub struct Ehr {
    pub dir: PathBuf,
}

pub fn ehr() -> &'static Ehr {
    static EHR: OnceLock<Ehr> = OnceLock::new();
    EHR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("neurocds-ehr-{}", std::process::id()));
        let ok = Command::new(tools_python())
            .args(["scripts/ehr_token.py", "keygen", "--dir"])
            .arg(&dir)
            .args(["--alg", "ES384", "--kid", "ehr-1"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "could not make EHR keys (tools venv missing? run scripts/bootstrap.sh)");
        Ehr { dir }
    })
}

impl Ehr {
    pub fn jwks(&self) -> String {
        std::fs::read_to_string(self.dir.join("jwks.json")).expect("jwks.json")
    }

    /// The EHR's key directory (`ehr_token.py keygen`), for scripts that sign as the EHR.
    pub fn keys_dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh token for `aud` (unique jti), signed in this process with the EHR's key: for load
    /// tests, where a Python process per token would be the bottleneck.
    pub fn quick_token(&self, aud: &str) -> String {
        static KEY: OnceLock<jsonwebtoken::EncodingKey> = OnceLock::new();
        let key = KEY.get_or_init(|| {
            let pem = std::fs::read(self.dir.join("keys/ehr-1.pem")).expect("the EHR's private key");
            jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("an EC private key")
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some("ehr-1".into());
        header.typ = Some("JWT".into());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({ "iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": Uuid::new_v4().to_string() });
        jsonwebtoken::encode(&header, &claims, key).expect("sign a token")
    }

    /// A fresh token for `aud` (unique jti), plus any extra `ehr_token.py sign` arguments.
    pub fn token(&self, aud: &str, extra: &[&str]) -> String {
        let out = Command::new(tools_python())
            .args(["scripts/ehr_token.py", "sign", "--dir"])
            .arg(&self.dir)
            .args(["--kid", "ehr-1", "--iss", ISS, "--aud", aud])
            .args(extra)
            .output()
            .expect("run ehr_token.py");
        assert!(out.status.success(), "ehr_token.py: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

pub const STAFF_ISS: &str = "https://idp.test.neurocds.org";

/// The hospital's identity provider for staff: an ES256 key and tokens with a `role` claim.
pub struct Idp {
    dir: PathBuf,
    kid: String,
}

impl Idp {
    pub fn new() -> Idp {
        Idp::with_kid("idp-1")
    }

    /// An identity provider whose key has this `kid` (a rotated key has another).
    pub fn with_kid(kid: &str) -> Idp {
        let dir = std::env::temp_dir().join(format!("neurocds-idp-{}", Uuid::new_v4().simple()));
        let ok = Command::new(tools_python())
            .args(["scripts/ehr_token.py", "keygen", "--dir"])
            .arg(&dir)
            .args(["--alg", "ES256", "--kid", kid])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "could not make staff IdP keys (tools venv missing? run scripts/bootstrap.sh)");
        Idp { dir, kid: kid.to_owned() }
    }

    pub fn jwks(&self) -> String {
        std::fs::read_to_string(self.dir.join("jwks.json")).expect("jwks.json")
    }

    /// A staff token for `alice`, with `role` when given, valid for ten minutes.
    pub fn token(&self, role: Option<&str>) -> String {
        let role = role.map(|r| format!("\"role\": \"{r}\",")).unwrap_or_default();
        let code = format!(
            "import jwt,time; k=open('{}/keys/{kid}.pem','rb').read(); print(jwt.encode({{{role} 'sub': 'alice', 'iss': '{STAFF_ISS}', 'aud': 'neurocds-staff', 'exp': int(time.time())+600}}, k, algorithm='ES256', headers={{'kid': '{kid}'}}))",
            self.dir.display(),
            kid = self.kid
        );
        let out = Command::new(tools_python()).args(["-c", &code]).output().expect("run the tools python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

pub struct TestApp {
    pub base: String,
    pub db_url: String,
    pub http: reqwest::Client,
    pub app: neurocds::state::AppState,
    /// Stops the server as SIGTERM would (`stop(true)`).
    pub server: actix_web::dev::ServerHandle,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A fresh, empty database on the test cluster.
pub async fn fresh_database() -> String {
    let admin = peer("NEUROCDS_TEST_PG_ADMIN_URL");
    let name = format!("neurocds_test_{}", Uuid::new_v4().simple());
    let mut conn = AsyncPgConnection::establish(&admin).await.expect("connect to the test PostgreSQL");
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
    let (prefix, _) = admin.rsplit_once('/').expect("admin URL has a database");
    format!("{prefix}/{name}")
}

/// Starts neurocds with the default config plus `overrides` (a JSON object in the shape of
/// `config/default.toml`). The EHR in [`ehr`] is trusted.
pub async fn spawn_app_with(overrides: Value) -> TestApp {
    spawn_app_on(free_port(), overrides).await
}

/// As [`spawn_app_with`], on a port chosen beforehand (for peers that must know our URL first,
/// such as an identity provider's registered redirect URI).
pub async fn spawn_app_on(port: u16, overrides: Value) -> TestApp {
    neurocds::telemetry::init("warn");
    let base = format!("http://127.0.0.1:{port}");
    let settings = settings_on(port, overrides).await;
    let db_url = settings.database.url.clone();
    let app = Application::build(settings).await.expect("the app starts");
    let (state, server) = (app.state().clone(), app.handle());
    tokio::spawn(app.run_until_stopped());
    TestApp { base, db_url, http: reqwest::Client::new(), app: state, server }
}

/// The tests' settings for a service on `port`, on a fresh database, with `overrides` merged in.
pub async fn settings_on(port: u16, overrides: Value) -> Settings {
    let base = format!("http://127.0.0.1:{port}");
    let db_url = fresh_database().await;
    let mut config = json!({
        "server": { "listen": format!("127.0.0.1:{port}"), "public_base_url": base, "workers": 2 },
        "database": { "url": db_url, "pool_size": 4 },
        "trust": { "clients": [ehr_client(json!({}))] },
        // The peers (Orthanc, the FHIR server, the tests' own misbehaving servers) are on loopback.
        "egress": { "allowed_networks": ["127.0.0.0/8", "::1/128"] },
        "model": { "manifest": tiny_ensemble().join("manifest.json"), "threads": 1 },
    });
    merge(&mut config, overrides);
    let figment = Figment::new().merge(Toml::file_exact("config/default.toml")).merge(Serialized::defaults(config));
    Settings::from_figment(figment).expect("test settings")
}

/// The trusted EHR's `trust.clients` entry: its JWKS, and any FHIR server or DICOMweb origin on
/// loopback (the peers listen on ports chosen at run time), plus `extra` fields.
pub fn ehr_client(extra: Value) -> Value {
    let mut client = json!({
        "iss": ISS, "jwks": ehr().jwks(),
        "fhir_servers": ["http://127.0.0.1:*/"], "dicomweb_origins": ["http://127.0.0.1:*/"],
    });
    merge(&mut client, extra);
    client
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(json!({})).await
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

impl TestApp {
    pub fn service_url(&self, id: &str) -> String {
        format!("{}/cds-services/{id}", self.base)
    }

    pub fn token_for(&self, id: &str) -> String {
        ehr().token(&self.service_url(id), &[])
    }

    /// POSTs a hook with a fresh valid token; returns status and JSON body.
    pub async fn hook(&self, id: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.service_url(id))
            .bearer_auth(self.token_for(id))
            .json(body)
            .send()
            .await
            .expect("hook request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A brain MRI order-sign (or order-select) request for `patient`, with `prefetch`.
pub fn brain_mri_hook(hook: &str, patient: &str, prefetch: Option<Value>, fhir: Option<(&str, Option<&str>)>) -> Value {
    let order = json!({
        "resourceType": "ServiceRequest", "id": "mri-1", "status": "draft", "intent": "order",
        "code": { "coding": [{ "system": "http://www.ama-assn.org/go/cpt", "code": "70553", "display": "MRI brain without and with contrast" }] },
        "subject": { "reference": format!("Patient/{patient}") }
    });
    let mut body = json!({
        "hook": hook,
        "hookInstance": Uuid::new_v4().to_string(),
        "context": {
            "userId": "Practitioner/dr-1", "patientId": patient, "encounterId": "enc-1",
            "draftOrders": { "resourceType": "Bundle", "type": "collection", "entry": [{ "resource": order }] }
        }
    });
    if hook == "order-select" {
        body["context"]["selections"] = json!(["ServiceRequest/mri-1"]);
    }
    if let Some(p) = prefetch {
        body["prefetch"] = p;
    }
    if let Some((server, token)) = fhir {
        body["fhirServer"] = json!(server);
        if let Some(t) = token {
            body["fhirAuthorization"] = json!({ "access_token": t, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "neurocds" });
        }
    }
    body
}

/// Every optional field of a CDS response is absent rather than null or empty (requirement 3).
pub fn assert_no_null_or_empty(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("{path} is null"),
        Value::String(s) => assert!(!s.is_empty(), "{path} is an empty string"),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                assert_no_null_or_empty(x, &format!("{path}[{i}]"));
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                if let Value::Array(a) = x {
                    assert!(!a.is_empty() || k == "cards", "{path}.{k} is an empty array");
                }
                assert_no_null_or_empty(x, &format!("{path}.{k}"));
            }
        }
        _ => {}
    }
}

/// The hospital's identity provider on loopback: npm `oidc-provider` run by
/// `scripts/oidc_provider.mjs` (installed by scripts/bootstrap.sh), stopped on drop.
pub struct OidcProvider {
    pub issuer: String,
    child: std::process::Child,
}

impl OidcProvider {
    /// Starts it with these clients (`{client_id, client_secret?, redirect_uris}`) and users
    /// (`{username, password, name, groups}`).
    pub fn start(clients: Value, users: Value) -> OidcProvider {
        OidcProvider::start_with(clients, users, json!({}))
    }

    /// As [`OidcProvider::start`], with more of the script's configuration (`ehr`).
    pub fn start_with(clients: Value, users: Value, more: Value) -> OidcProvider {
        use std::io::BufRead;
        let mut config = json!({ "port": 0, "clients": clients, "users": users, "stop_with_stdin": true });
        merge(&mut config, more);
        let mut child = std::process::Command::new("node")
            .args(["scripts/oidc_provider.mjs", &config.to_string()])
            .env("NODE_PATH", python().join("node/node_modules"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node runs (installed by scripts/bootstrap.sh)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the provider's stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("the provider says where it listens");
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("oidc-provider did not start ({e}): {line:?}"));
        OidcProvider { issuer: ready["issuer"].as_str().expect("an issuer").to_owned(), child }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
