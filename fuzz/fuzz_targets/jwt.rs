//! The `Authorization` header of a CDS Hooks call: bearer scheme, JOSE header, claims, key
//! lookup (inline JWKS; no network), signature, audience, times and replay.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use neurocds::{cds::auth::Verifier, config::Settings};

const JWKS: &str = include_str!("../seeds/jwks.json");
const SERVICE: &str = "https://cds.fuzz.example/cds-services/neurocds-brain-mri-order-sign";

fn verifier() -> &'static (tokio::runtime::Runtime, Verifier) {
    static V: OnceLock<(tokio::runtime::Runtime, Verifier)> = OnceLock::new();
    V.get_or_init(|| {
        use figment::{Figment, providers::{Format, Serialized, Toml}};
        let overrides = serde_json::json!({
            "server": { "public_base_url": "https://cds.fuzz.example" },
            "database": { "url": "postgres://fuzz@localhost/fuzz" },
            "trust": { "clients": [{ "iss": "https://ehr.fuzz.example", "jwks": JWKS }] },
        });
        let figment = Figment::new().merge(Toml::file_exact(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/default.toml"))).merge(Serialized::defaults(overrides));
        let settings = Settings::from_figment(figment).expect("fuzz settings");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let verifier = Verifier::new(&settings).expect("verifier");
        (runtime, verifier)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let (runtime, verifier) = verifier();
    let _ = runtime.block_on(verifier.verify(Some(header), SERVICE));
});
