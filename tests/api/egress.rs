//! Egress: the service requests nothing a caller names unless the caller's client may name it,
//! and never an internal address the site has not allowed. Refusals read the same whatever the
//! target, so they cannot map a network.

use std::net::TcpListener;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{TestApp, brain_mri_hook, ehr_client, peer, spawn_app_with},
    hooks::{decisions, patient_with_prior_mr},
};

const SIGN: &str = "neurocds-brain-mri-order-sign";

/// A port with a listener that records whether anything connected (it never answers).
struct Trap {
    listener: TcpListener,
    port: u16,
}

impl Trap {
    fn new() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("addr").port();
        Trap { listener, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn was_contacted(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

/// An app whose EHR may name only the real FHIR server and the real PACS.
async fn app_with_listed_peers() -> TestApp {
    let client = ehr_client(json!({ "fhir_servers": [peer("NEUROCDS_TEST_FHIR")], "dicomweb_origins": [peer("NEUROCDS_TEST_DICOMWEB")] }));
    spawn_app_with(json!({ "trust": { "clients": [client] } })).await
}

fn assert_names_nothing(text: &str, trap: &Trap) {
    assert!(!text.contains(&trap.port.to_string()) && !text.contains("127.0.0.1") && !text.contains("localhost"), "the answer names the target: {text}");
}

#[tokio::test]
async fn a_fhir_server_not_on_the_clients_list_is_never_asked_and_the_412_names_nothing() {
    let app = app_with_listed_peers().await;
    let trap = Trap::new();
    let body = brain_mri_hook("order-sign", "p-egress", None, Some((&trap.url("fhir"), Some("lent-token"))));
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!(status, 412, "{resp}");
    let text = resp.to_string();
    assert!(text.contains("not a FHIR server this client may name"), "{text}");
    assert_names_nothing(&text, &trap);
    assert!(!trap.was_contacted(), "the unlisted FHIR server was contacted");
}

/// Listed is not enough: an internal address the site has not allowed is refused too, by
/// literal or by a name that resolves to it, with the same kind of answer.
#[tokio::test]
async fn a_listed_fhir_server_on_an_internal_address_the_site_has_not_allowed_is_never_asked() {
    let client = ehr_client(json!({ "fhir_servers": ["http://127.0.0.1:*/", "http://localhost:*/"] }));
    let app = spawn_app_with(json!({ "trust": { "clients": [client] }, "egress": { "allowed_networks": [] } })).await;
    let trap = Trap::new();
    for server in [trap.url("fhir"), format!("http://localhost:{}/fhir", trap.port)] {
        let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", "p-egress", None, Some((&server, None)))).await;
        assert_eq!(status, 412, "{server}: {resp}");
        assert!(resp.to_string().contains("may"), "{resp}");
        assert_names_nothing(&resp.to_string(), &trap);
    }
    assert!(!trap.was_contacted(), "an internal address was contacted");
}

/// A prior study whose Endpoint points at a PACS the client may not name is not analysed: no
/// card, the PACS never asked, the refusal in the audit trail.
#[tokio::test]
async fn a_study_whose_endpoint_is_not_on_the_clients_list_is_not_analysed_and_the_refusal_is_audited() {
    let app = app_with_listed_peers().await;
    let trap = Trap::new();
    let patient = format!("p{}", Uuid::new_v4().simple());
    let resources = patient_with_prior_mr(&patient, &trap.url("dicom-web"));
    let imaging: Vec<Value> = resources[1..].iter().map(|r| json!({ "resource": r })).collect();
    let prefetch = json!({ "patient": resources[0], "priorImaging": { "resourceType": "Bundle", "type": "searchset", "entry": imaging } });
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, Some(prefetch), None)).await;
    assert_eq!((status, resp), (200, json!({ "cards": [] })));
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 1);
    let reason = rows[0].record.reason.clone().unwrap_or_default();
    assert!(reason.contains("DICOMweb endpoint is not one this client's studies may point at"), "{reason}");
    assert_names_nothing(&reason, &trap);
    assert!(rows[0].record.model_version.is_none(), "no analysis ran");
    assert!(!trap.was_contacted(), "the unlisted PACS was contacted");
}
