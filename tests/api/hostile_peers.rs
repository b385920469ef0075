//! The hostile-peer suite: a PACS and a FHIR server that misbehave on purpose, one way at a
//! time, through the running service. Each is answered safely within the hook budget: the hook
//! gets an answer, the decision is audited with a reason naming the failed step, the service stays
//! ready, and the next hook for the same study (against the honest PACS) is analysed.
//!
//! The hostile PACS is a proxy in front of the test Orthanc that forwards every request except
//! the one step it is told to spoil; the hostile FHIR server spoils every answer.

use std::{io::Write, time::{Duration, Instant}};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    e2e::{load_from, small_cohort, pick_from},
    helpers::{TestApp, brain_mri_hook, peer, spawn_app_with},
    hooks::decisions,
};

const SIGN: &str = "neurocds-brain-mri-order-sign";

/// Which DICOMweb request the proxy spoils.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// QIDO-RS: `GET …/studies/{uid}/series`.
    SeriesSearch,
    /// WADO-RS metadata: `GET …/series/{uid}/metadata`.
    Metadata,
    /// WADO-RS retrieval: `GET …/studies/{uid}/series/{uid}`.
    Retrieve,
}

impl Step {
    fn matches(self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path);
        match self {
            Step::SeriesSearch => path.ends_with("/series"),
            Step::Metadata => path.ends_with("/metadata"),
            Step::Retrieve => path.contains("/series/") && !path.ends_with("/metadata") && !path.contains("/instances"),
        }
    }
}

/// How an answer is spoiled.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// 200, chunked, and the body never ends.
    EndlessBody,
    /// Declares far more bytes than it sends, then closes.
    LyingLength,
    /// A single 1 MiB header line.
    HugeHeader,
    /// The status line, then one byte every half second.
    SlowLoris,
    /// 302 to a loopback address nothing is allowed to reach.
    RedirectToLoopback,
    /// A multipart body that is not one: garbage parts, no closing boundary.
    MalformedMultipart,
    /// One part: a deflated data set of 64 KiB that inflates to 64 MiB.
    DeflateBomb,
}

/// A listener that answers each connection with `answer`.
pub(crate) async fn listen<F, Fut>(answer: F) -> u16
where
    F: Fn(TcpStream, String) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                if let Some(head) = read_head(&mut socket).await {
                    answer(socket, head).await;
                }
            });
        }
    });
    port
}

async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

pub(crate) fn request_path(head: &str) -> String {
    head.split_whitespace().nth(1).unwrap_or("/").to_owned()
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// A PACS at `http://127.0.0.1:{port}{dicomweb path}` that is the test Orthanc except at `step`.
async fn hostile_pacs(step: Step, how: Misbehaviour) -> String {
    let upstream = url::Url::parse(&peer("NEUROCDS_TEST_DICOMWEB")).unwrap();
    let origin = upstream.origin().ascii_serialization();
    let port = listen(move |socket, head| {
        let origin = origin.clone();
        async move {
            let path = request_path(&head);
            if step.matches(&path) {
                misbehave(socket, how, step).await;
            } else {
                forward(socket, &origin, &path, header(&head, "accept").unwrap_or("*/*")).await;
            }
        }
    })
    .await;
    format!("http://127.0.0.1:{port}{}", upstream.path().trim_end_matches('/'))
}

/// A FHIR server whose every answer is spoiled.
async fn hostile_fhir(how: Misbehaviour) -> String {
    let port = listen(move |socket, _head| misbehave(socket, how, Step::SeriesSearch)).await;
    format!("http://127.0.0.1:{port}/fhir")
}

pub(crate) async fn forward(mut socket: TcpStream, origin: &str, path: &str, accept: &str) {
    let Ok(r) = reqwest::Client::new().get(format!("{origin}{path}")).header("Accept", accept).send().await else {
        return;
    };
    let (status, ct) = (r.status().as_u16(), r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned());
    let body = r.bytes().await.unwrap_or_default();
    let head = format!("HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(&body).await;
}

async fn misbehave(mut socket: TcpStream, how: Misbehaviour, step: Step) {
    let json_ct = "application/dicom+json";
    let multipart_ct = "multipart/related; type=\"application/dicom\"; boundary=hostile";
    let ct = if matches!(step, Step::Retrieve) { multipart_ct } else { json_ct };
    let _ = match how {
        Misbehaviour::EndlessBody => {
            let _ = socket.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes()).await;
            let chunk = "{\"00080060\":{\"vr\":\"CS\",\"Value\":[\"MR\"]}},".repeat(2048);
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            let _ = socket.write_all(b"1\r\n[\r\n").await;
            while socket.write_all(framed.as_bytes()).await.is_ok() {}
            Ok(())
        }
        Misbehaviour::LyingLength => {
            let _ = socket.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: 10000000\r\n\r\n[{{}}").as_bytes()).await;
            socket.shutdown().await
        }
        Misbehaviour::HugeHeader => {
            let filler = "a".repeat(1 << 20);
            socket.write_all(format!("HTTP/1.1 200 OK\r\nX-Filler: {filler}\r\nContent-Type: {ct}\r\nContent-Length: 2\r\n\r\n[]").as_bytes()).await
        }
        Misbehaviour::SlowLoris => {
            let _ = socket.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: 100000\r\n\r\n").as_bytes()).await;
            loop {
                if socket.write_all(b" ").await.is_err() {
                    break Ok(());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Misbehaviour::RedirectToLoopback => socket.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/steal\r\nContent-Length: 0\r\n\r\n").await,
        Misbehaviour::MalformedMultipart => {
            let body = "--hostile\r\nContent-Type: application/dicom\r\n\r\nnot a DICOM file at all\r\n--hostile\r\nContent-Type: application/dicom\r\n\r\n\0\0\0garbage without an end";
            socket.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: {multipart_ct}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await
        }
        Misbehaviour::DeflateBomb => {
            let mut body = b"--hostile\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
            body.extend_from_slice(&deflate_bomb());
            body.extend_from_slice(b"\r\n--hostile--\r\n");
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {multipart_ct}\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = socket.write_all(head.as_bytes()).await;
            socket.write_all(&body).await
        }
    };
}

/// A Part-10 file in Deflated Explicit VR Little Endian whose data set is 64 MiB of zeros.
fn deflate_bomb() -> Vec<u8> {
    let meta = dicom_object::FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1.99")
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.4")
        .media_storage_sop_instance_uid("2.25.99")
        .build()
        .unwrap();
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    meta.write(&mut file).unwrap();
    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflater.write_all(&vec![0u8; 64 << 20]).unwrap();
    file.extend_from_slice(&deflater.finish().unwrap());
    file
}

async fn app() -> TestApp {
    spawn_app_with(json!({
        // Time-outs short enough for the suite; the hook waits for the analysis to end.
        "dicomweb": { "request_timeout_s": 3, "max_bytes_per_series": 20_000_000 },
        "fhir": { "request_timeout_s": 3, "max_response_bytes": 2_000_000 },
        "hooks": { "order_sign_budget_ms": 60000 },
    }))
    .await
}

/// The prefetch of a loaded study whose ImagingStudy points at `pacs`.
pub(crate) async fn prefetch_pointing_at(patient: &str, pacs: &str) -> Value {
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let get = |url: String| async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() };
    let patient_resource = get(format!("{fhir}/Patient/{patient}")).await;
    let mut study = get(format!("{fhir}/ImagingStudy/mr-{patient}")).await;
    study["endpoint"] = json!([{ "reference": "Endpoint/hostile" }]);
    let endpoint = json!({ "resourceType": "Endpoint", "id": "hostile", "status": "active",
        "connectionType": { "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs" },
        "payloadType": [{ "text": "DICOM" }], "address": pacs });
    json!({ "patient": patient_resource, "priorImaging": { "resourceType": "Bundle", "type": "searchset", "entry": [{ "resource": study }, { "resource": endpoint }] } })
}

async fn ready(app: &TestApp) -> bool {
    reqwest::get(format!("{}/readyz", app.base)).await.map(|r| r.status().is_success()).unwrap_or(false)
}

/// One spoiled PACS step: the hook is answered in time, the decision is audited as unavailable
/// with a reason naming the failure, the service stays ready, and the honest PACS is then asked
/// again (the failure is not stored as the study's analysis).
async fn pacs_misbehaving(step: Step, how: Misbehaviour, reason_says: &[&str]) {
    let app = app().await;
    let patient = load_from(small_cohort(), &pick_from(small_cohort(), 0));
    let pacs = hostile_pacs(step, how).await;
    let started = Instant::now();
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, Some(prefetch_pointing_at(&patient, &pacs).await), None)).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{step:?}/{how:?}: {resp}");
    assert!(took < Duration::from_secs(30), "{step:?}/{how:?} took {took:?}");
    let pacs_address = pacs.split('/').nth(2).unwrap();
    assert!(!resp.to_string().contains(pacs_address), "the PACS address does not reach the card: {resp}");
    let rows = decisions(&app).await;
    let row = rows.last().expect("the decision is audited");
    assert_eq!(row.record.outcome, "unavailable", "{step:?}/{how:?}: {:?}", row.record.reason);
    let reason = row.record.reason.clone().unwrap_or_default();
    assert!(reason_says.iter().any(|s| reason.contains(s)), "{step:?}/{how:?}: the reason names the failure: {reason}");
    assert!(ready(&app).await, "the service is still ready");

    let honest = prefetch_pointing_at(&patient, &peer("NEUROCDS_TEST_DICOMWEB")).await;
    let (status, _) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, Some(honest), None)).await;
    assert_eq!(status, 200);
    let rows = decisions(&app).await;
    let after = rows.last().unwrap();
    assert_ne!(after.record.outcome, "unavailable", "{step:?}/{how:?}: the honest PACS is asked again: {:?}", after.record.reason);
}

#[tokio::test]
async fn a_series_search_that_never_ends_is_cut_at_the_byte_limit() {
    pacs_misbehaving(Step::SeriesSearch, Misbehaviour::EndlessBody, &["more than 20000000 bytes", "no complete answer"]).await;
}

#[tokio::test]
async fn a_series_search_with_a_lying_content_length_fails_the_request() {
    pacs_misbehaving(Step::SeriesSearch, Misbehaviour::LyingLength, &["request failed", "malformed"]).await;
}

#[tokio::test]
async fn a_series_search_with_a_one_mebibyte_header_fails_the_request() {
    pacs_misbehaving(Step::SeriesSearch, Misbehaviour::HugeHeader, &["request failed"]).await;
}

#[tokio::test]
async fn a_series_search_redirected_to_loopback_is_not_followed() {
    pacs_misbehaving(Step::SeriesSearch, Misbehaviour::RedirectToLoopback, &["HTTP 302"]).await;
}

#[tokio::test]
async fn metadata_trickled_a_byte_at_a_time_times_out() {
    pacs_misbehaving(Step::Metadata, Misbehaviour::SlowLoris, &["no complete answer within 3 s"]).await;
}

#[tokio::test]
async fn a_retrieval_that_is_not_multipart_is_refused() {
    pacs_misbehaving(Step::Retrieve, Misbehaviour::MalformedMultipart, &["malformed multipart", "not a DICOM instance"]).await;
}

#[tokio::test]
async fn a_deflate_bomb_is_refused_before_it_is_inflated() {
    pacs_misbehaving(Step::Retrieve, Misbehaviour::DeflateBomb, &["inflates to more than 20000000 bytes"]).await;
}

#[tokio::test]
async fn a_retrieval_that_never_ends_is_cut_at_the_byte_limit() {
    pacs_misbehaving(Step::Retrieve, Misbehaviour::EndlessBody, &["more than 20000000 bytes", "no complete answer", "malformed multipart"]).await;
}

/// A FHIR server that spoils every answer: the hook that needs it is answered 412 in time with a
/// reason, and the service stays ready.
#[tokio::test]
async fn a_fhir_server_that_misbehaves_gets_a_prompt_412_and_the_service_stays_ready() {
    let app = app().await;
    for how in [Misbehaviour::EndlessBody, Misbehaviour::LyingLength, Misbehaviour::HugeHeader, Misbehaviour::SlowLoris, Misbehaviour::RedirectToLoopback] {
        let fhir = hostile_fhir(how).await;
        let started = Instant::now();
        let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", "p-hostile", None, Some((&fhir, None)))).await;
        assert_eq!(status, 412, "{how:?}: {resp}");
        assert!(started.elapsed() < Duration::from_secs(15), "{how:?} took {:?}", started.elapsed());
        assert!(!resp.to_string().contains("x-filler") && !resp.to_string().contains("aaaa"), "{how:?}: nothing of the answer is echoed");
        assert!(ready(&app).await, "{how:?}: the service is still ready");
    }
}

/// Issue 15: an analysis that outlives `worker.analysis_deadline_s` is stopped there — here a PACS
/// that trickles its series search, while the request's own time-out is far away — and the
/// clinician waiting on order-sign gets "unavailable" at the deadline, not at the PACS's pace; the
/// worker's place is free again for the next analysis, which the honest PACS then answers.
#[tokio::test]
async fn an_analysis_past_its_deadline_is_stopped_and_its_place_given_back() {
    let app = spawn_app_with(json!({
        "dicomweb": { "request_timeout_s": 60 },
        "hooks": { "order_sign_budget_ms": 30000 },
        "worker": { "analysis_deadline_s": 2, "concurrency": 1, "poll_ms": 200 },
    }))
    .await;
    let patient = load_from(small_cohort(), &pick_from(small_cohort(), 0));
    let pacs = hostile_pacs(Step::SeriesSearch, Misbehaviour::SlowLoris).await;
    let started = Instant::now();
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, Some(prefetch_pointing_at(&patient, &pacs).await), None)).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{resp}");
    assert!(took < Duration::from_secs(20), "answered at the deadline, not the PACS's time-out: {took:?}");
    let rows = decisions(&app).await;
    let row = rows.last().expect("the decision is audited");
    assert_eq!(row.record.outcome, "unavailable", "{:?}", row.record.reason);
    assert_eq!(row.record.reason.as_deref(), Some("the analysis took longer than 2 s"));
    assert!(ready(&app).await, "the service is still ready");

    // One place (concurrency 1): the next analysis runs only if the stopped one gave it back.
    let honest = prefetch_pointing_at(&patient, &peer("NEUROCDS_TEST_DICOMWEB")).await;
    let (status, _) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, Some(honest), None)).await;
    assert_eq!(status, 200);
    let rows = decisions(&app).await;
    let after = rows.last().unwrap();
    assert_ne!(after.record.outcome, "unavailable", "the place was given back: {:?}", after.record.reason);
}
