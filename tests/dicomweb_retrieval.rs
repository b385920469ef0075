//! DICOMweb retrieval against a real PACS (Orthanc with its DICOMweb plugin): the fixtures are
//! uploaded with `POST /instances`, then found with QIDO-RS, described with WADO-RS metadata,
//! recognised, retrieved as multipart/related, decoded and assembled.
//!
//!     eval "$(scripts/peers.sh start)"      # NEUROCDS_TEST_DICOMWEB, NEUROCDS_TEST_ORTHANC
//!     cargo test --release --test dicomweb_retrieval

#[path = "support/dicom_fixtures.rs"]
mod dicom_fixtures;

use std::net::TcpListener;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dicom_fixtures::{fixtures, read_files};
use neurocds::config::{DicomWebCredential, DicomWebSettings};
use neurocds::dicomweb::{DicomWebClient, DicomWebError, Step};
use neurocds::egress::{AddressGuard, parse_network};
use neurocds_analysis::imaging::{SeriesClass, SeriesRules, Volume, select_series};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: start the test peers first with `eval \"$(scripts/peers.sh start)\"`"))
}

fn dicomweb() -> String {
    env("NEUROCDS_TEST_DICOMWEB")
}

fn settings(max_instances: usize, max_bytes: u64, timeout_s: u64, credentials: Vec<DicomWebCredential>) -> DicomWebSettings {
    DicomWebSettings { default_base_url: String::new(), request_timeout_s: timeout_s, max_instances_per_series: max_instances, max_bytes_per_series: max_bytes, qido_page_size: 100, credentials }
}

/// The test peers listen on loopback, which the egress guard refuses unless allowed.
fn loopback() -> AddressGuard {
    AddressGuard::new(vec![parse_network("127.0.0.0/8").expect("CIDR"), parse_network("::1/128").expect("CIDR")])
}

fn client() -> DicomWebClient {
    DicomWebClient::new(&settings(1200, 600_000_000, 30, vec![]), &loopback()).expect("client")
}

/// Uploads every fixture file to the shared Orthanc, once per test binary.
fn uploaded() -> &'static dicom_fixtures::Fixtures {
    static UPLOADED: OnceLock<()> = OnceLock::new();
    let fx = fixtures();
    UPLOADED.get_or_init(|| {
        let orthanc = env("NEUROCDS_TEST_ORTHANC");
        let files = fx.all_files();
        // Each #[tokio::test] has its own runtime; the upload runs on one of its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let http = reqwest::Client::new();
                for f in files {
                    let body = std::fs::read(&f).expect("fixture file");
                    let r = http.post(format!("{orthanc}/instances")).header("Content-Type", "application/dicom").body(body).send().await;
                    let r = r.unwrap_or_else(|e| panic!("upload to {orthanc}: {e}"));
                    assert!(r.status().is_success(), "upload of {} to Orthanc: HTTP {}", f.display(), r.status());
                }
            })
        })
        .join()
        .expect("upload thread");
    });
    fx
}

#[tokio::test]
async fn series_metadata_carries_the_headers_recognition_needs() {
    let fx = uploaded();
    let series = client().series_metadata(&dicomweb(), &fx.manifest.study_uid).await.expect("series metadata");
    assert_eq!(series.len(), fx.manifest.series.len() + fx.manifest.transfer_syntax_series.len());
    let t1c = series.iter().find(|s| s.series_uid == fx.series("t1c_axial").series_uid).expect("t1c listed");
    assert_eq!(t1c.modality.as_deref(), Some("MR"));
    assert_eq!(t1c.description.as_deref(), Some("t1_mprage_tra_post"));
    assert_eq!(t1c.series_number, Some(5));
    assert_eq!((t1c.repetition_time_ms, t1c.echo_time_ms, t1c.inversion_time_ms), (Some(2300.0), Some(2.3), Some(900.0)));
    assert_eq!(t1c.scanning_sequence, ["GR", "IR"]);
    assert_eq!(t1c.contrast_bolus_agent.as_deref(), Some("Gadovist"));
    assert_eq!(t1c.mr_acquisition_type.as_deref(), Some("3D"));
    assert_eq!(t1c.image_orientation, Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
    assert_eq!(t1c.pixel_spacing, Some([1.0, 1.1]));
    assert_eq!((t1c.rows, t1c.columns, t1c.instance_count, t1c.slice_count), (Some(192), Some(160), 64, 64));
    assert_eq!(t1c.acquisition_time.as_deref(), Some("102000"));
    assert_eq!(t1c.manufacturer.as_deref(), Some("SIEMENS"));
    assert!(t1c.frame_of_reference_uid.is_some());

    // The enhanced multi-frame series keeps its timing in the functional groups.
    let enhanced = series.iter().find(|s| s.series_uid == fx.series("t1c_enhanced_sag").series_uid).expect("enhanced listed");
    assert_eq!((enhanced.repetition_time_ms, enhanced.echo_time_ms, enhanced.inversion_time_ms), (Some(8.1), Some(3.7), Some(900.0)));
    assert_eq!(enhanced.scanning_sequence, ["GR", "IR"]);
    assert_eq!((enhanced.instance_count, enhanced.slice_count), (1, 40));
    assert_eq!(enhanced.image_orientation, Some([0.0, 1.0, 0.0, 0.0, 0.0, -1.0]));
}

#[tokio::test]
async fn shipped_rules_choose_the_axial_t1c_and_the_t2_of_the_study_in_the_pacs() {
    let fx = uploaded();
    let series = client().series_metadata(&dicomweb(), &fx.manifest.study_uid).await.expect("series metadata");
    let sel = select_series(&SeriesRules::default(), &series);
    assert_eq!(sel.t1c.as_deref(), Some(fx.series("t1c_axial").series_uid.as_str()), "{:#?}", sel.verdicts);
    assert_eq!(sel.t2.as_deref(), Some(fx.series("t2_axial").series_uid.as_str()), "{:#?}", sel.verdicts);
    for s in &fx.manifest.series {
        let v = sel.verdicts.iter().find(|v| v.series_uid == s.series_uid).expect("a verdict per series");
        let class = serde_json::to_value(v.class).expect("class serialises");
        assert_eq!(class.as_str(), s.expected_class.as_deref(), "{}: {}", s.name, v.reason);
    }
    // pydicom's 3-slice MR_small stacks are too short to be a diagnostic volume.
    let mr_small = sel.verdicts.iter().find(|v| v.series_uid == fx.series("rle").series_uid).expect("verdict");
    assert_eq!(mr_small.class, SeriesClass::Localizer, "{}", mr_small.reason);
}

#[tokio::test]
async fn retrieved_series_assemble_to_the_volumes_of_their_files_fetched_concurrently() {
    let fx = uploaded();
    let (client, base, study) = (client(), dicomweb(), &fx.manifest.study_uid);
    let (t1c, t2) = (fx.series("t1c_axial"), fx.series("t2_axial"));
    let (a, b) = tokio::join!(client.retrieve_series(&base, study, &t1c.series_uid), client.retrieve_series(&base, study, &t2.series_uid));
    for (fixture, retrieved) in [(t1c, a), (t2, b)] {
        let retrieved = retrieved.unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        assert_eq!(retrieved.len(), fixture.files.len());
        let from_pacs = Volume::assemble(&fixture.series_uid, &retrieved).expect("assemble retrieved");
        let from_files = Volume::assemble(&fixture.series_uid, &read_files(&fixture.files)).expect("assemble files");
        assert_eq!(from_pacs.affine, from_files.affine);
        assert_eq!(from_pacs.data, from_files.data);
        assert_eq!(from_pacs.series_uid, fixture.series_uid);
    }
}

#[tokio::test]
async fn enhanced_multiframe_and_compressed_series_come_back_decodable() {
    let fx = uploaded();
    for name in ["t1c_enhanced_sag", "rle", "jpeg2000_lossless", "deflate", "big_endian"] {
        let s = fx.series(name);
        let objs = client().retrieve_series(&dicomweb(), &fx.manifest.study_uid, &s.series_uid).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let v = Volume::assemble(&s.series_uid, &objs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.dims(), [s.cols, s.rows, s.slices], "{name}");
        if let Some(sum) = s.pixel_sum {
            let ours: f64 = v.data.iter().map(|&x| x as f64).sum();
            assert!((ours - sum).abs() <= 1e-6 * sum.abs(), "{name}: ours {ours}, pydicom {sum}");
        }
    }
}

#[tokio::test]
async fn a_series_stored_as_jpeg_ls_arrives_transcoded_and_decodes() {
    // JPEG-LS has no decoder in this build; the client asks for the default transfer syntax,
    // which the PACS transcodes to.
    let fx = uploaded();
    let s = fx.series("jpeg_ls_lossless");
    let objs = client().retrieve_series(&dicomweb(), &fx.manifest.study_uid, &s.series_uid).await.expect("retrieve");
    assert!(objs.iter().all(|o| o.meta().transfer_syntax().trim_end_matches('\0') == "1.2.840.10008.1.2.1"));
    let v = Volume::assemble(&s.series_uid, &objs).expect("assemble transcoded JPEG-LS");
    let baseline = Volume::assemble("baseline", &read_files(&fx.series("explicit_le").files)).expect("baseline");
    assert_eq!(v.data, baseline.data);
}

#[tokio::test]
async fn a_full_study_or_series_url_works_as_the_base() {
    let fx = uploaded();
    let (study, s) = (&fx.manifest.study_uid, fx.series("t2_axial"));
    let study_url = format!("{}/studies/{study}", dicomweb());
    let series_url = format!("{}/studies/{study}/series/{}/", dicomweb(), s.series_uid);
    let listed = client().series_metadata(&study_url, study).await.expect("study URL as base");
    assert!(listed.iter().any(|m| m.series_uid == s.series_uid));
    let objs = client().retrieve_series(&series_url, study, &s.series_uid).await.expect("series URL as base");
    assert_eq!(objs.len(), s.slices);
}

#[tokio::test]
async fn more_instances_than_allowed_is_a_typed_error() {
    let fx = uploaded();
    let s = fx.series("t1c_axial");
    let small = DicomWebClient::new(&settings(10, 600_000_000, 30, vec![]), &loopback()).expect("client");
    let err = small.retrieve_series(&dicomweb(), &fx.manifest.study_uid, &s.series_uid).await.expect_err("limit");
    assert!(matches!(err, DicomWebError::TooManyInstances { limit: 10, step: Step::RetrieveSeries, .. }), "{err}");
    assert!(err.to_string().contains("max_instances_per_series"), "{err}");
}

#[tokio::test]
async fn more_bytes_than_allowed_is_a_typed_error() {
    let fx = uploaded();
    let s = fx.series("t1c_axial");
    let small = DicomWebClient::new(&settings(1200, 500_000, 30, vec![]), &loopback()).expect("client");
    let err = small.retrieve_series(&dicomweb(), &fx.manifest.study_uid, &s.series_uid).await.expect_err("limit");
    assert!(matches!(err, DicomWebError::TooLarge { limit: 500_000, .. }), "{err}");
    assert!(err.to_string().contains("max_bytes_per_series"), "{err}");
}

#[tokio::test]
async fn metadata_larger_than_the_byte_limit_is_a_typed_error() {
    let fx = uploaded();
    let small = DicomWebClient::new(&settings(1200, 20_000, 30, vec![]), &loopback()).expect("client");
    let err = small.series_metadata(&dicomweb(), &fx.manifest.study_uid).await.expect_err("limit");
    assert!(matches!(err, DicomWebError::TooLarge { limit: 20_000, .. }), "{err}");
}

#[tokio::test]
async fn series_search_follows_qido_paging_until_every_series_is_listed() {
    let fx = uploaded();
    let study = &fx.manifest.study_uid;
    // Orthanc honours `limit`: one page of 2 is not the study.
    let page: Vec<serde_json::Value> = reqwest::get(format!("{}/studies/{study}/series?limit=2&offset=0", dicomweb())).await.expect("QIDO").json().await.expect("JSON");
    assert_eq!(page.len(), 2);
    let paged = DicomWebClient::new(&DicomWebSettings { qido_page_size: 2, ..settings(1200, 600_000_000, 30, vec![]) }, &loopback()).expect("client");
    let series = paged.series_metadata(&dicomweb(), study).await.expect("series metadata");
    let mut listed: Vec<&str> = series.iter().map(|s| s.series_uid.as_str()).collect();
    let mut expected: Vec<&str> = fx.manifest.series.iter().chain(&fx.manifest.transfer_syntax_series).map(|s| s.series_uid.as_str()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
}

/// A QIDO-RS series search that answers `answer(offset)`: series UIDs (CT, so no WADO-RS
/// metadata is asked for) and whether to add the PS3.18 "more results" Warning. Records the
/// query string of every request.
fn fake_qido(answer: impl Fn(usize) -> (Vec<&'static str>, bool) + Send + 'static) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let queries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = queries.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
            let query = target.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
            let offset = query.split('&').find_map(|kv| kv.strip_prefix("offset=")).and_then(|v| v.parse().ok()).unwrap_or(0);
            // Paging is what these tests read; the `includefield`s are checked once, below.
            let paging: Vec<&str> = query.split('&').filter(|kv| !kv.starts_with("includefield=")).collect();
            seen.lock().expect("lock").push(paging.join("&"));
            if !query.split('&').any(|kv| kv == "includefield=00180080") {
                seen.lock().expect("lock").push(format!("no includefield in {query}"));
            }
            let (uids, more) = answer(offset);
            let items: Vec<String> = uids.iter().map(|u| format!(r#"{{"0020000E":{{"vr":"UI","Value":["{u}"]}},"00080060":{{"vr":"CS","Value":["CT"]}}}}"#)).collect();
            let body = format!("[{}]", items.join(","));
            let warning = if more { "Warning: 299 127.0.0.1: There are additional results that can be requested\r\n" } else { "" };
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: {}\r\n{warning}Connection: close\r\n\r\n{body}", body.len());
        }
    });
    (format!("http://127.0.0.1:{port}/dicom-web"), queries)
}

fn paged_client(page_size: usize) -> DicomWebClient {
    DicomWebClient::new(&DicomWebSettings { qido_page_size: page_size, ..settings(1200, 600_000_000, 5, vec![]) }, &loopback()).expect("client")
}

#[tokio::test]
async fn a_short_page_with_the_more_results_warning_is_followed_by_the_next() {
    // The server caps pages at one series, below the page size asked, and says so.
    let (base, queries) = fake_qido(|offset| match offset {
        0 => (vec!["1.2.1"], true),
        1 => (vec!["1.2.2"], true),
        _ => (vec!["1.2.3"], false),
    });
    let series = paged_client(5).series_metadata(&base, "1.2.3.4").await.expect("series");
    let uids: Vec<&str> = series.iter().map(|s| s.series_uid.as_str()).collect();
    assert_eq!(uids, ["1.2.1", "1.2.2", "1.2.3"]);
    assert_eq!(*queries.lock().expect("lock"), ["limit=5&offset=0", "limit=5&offset=1", "limit=5&offset=2"]);
}

#[tokio::test]
async fn a_server_that_ignores_limit_and_offset_ends_the_search_after_one_repeat() {
    let (base, queries) = fake_qido(|_| (vec!["1.2.1", "1.2.2", "1.2.3"], false));
    let series = paged_client(2).series_metadata(&base, "1.2.3.4").await.expect("series");
    assert_eq!(series.len(), 3);
    assert_eq!(*queries.lock().expect("lock"), ["limit=2&offset=0", "limit=2&offset=3"]);
}

#[tokio::test]
async fn an_unknown_series_is_http_404_naming_the_step_and_path() {
    let fx = uploaded();
    let err = client().retrieve_series(&dicomweb(), &fx.manifest.study_uid, "1.2.3.4.5.6.7.8.9").await.expect_err("no such series");
    assert!(matches!(err, DicomWebError::Status { status: 404, step: Step::RetrieveSeries, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("WADO-RS series retrieval") && text.contains("/dicom-web/studies/") && text.contains("/series/1.2.3.4.5.6.7.8.9"), "{text}");
}

#[tokio::test]
async fn an_unknown_study_has_no_series() {
    uploaded();
    let series = client().series_metadata(&dicomweb(), "1.2.3.4.5.6.7.8.9.10").await.expect("QIDO answers [] for an unknown study");
    assert!(series.is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_a_request_error_naming_the_step() {
    // Bind then drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let err = client().series_metadata(&format!("http://127.0.0.1:{port}/dicom-web"), "1.2.3").await.expect_err("refused");
    assert!(matches!(err, DicomWebError::Request { step: Step::SearchSeries, .. }), "{err}");
    assert!(err.to_string().contains("QIDO-RS series search"), "{err}");
}

/// Without `egress.allowed_networks` covering it, a loopback PACS is never contacted, by IP
/// literal or by a name that resolves to it, and the error does not say where it was.
#[tokio::test]
async fn a_pacs_on_a_refused_address_is_never_contacted_and_the_error_names_no_address() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("addr").port();
    let guarded = DicomWebClient::new(&settings(1200, 600_000_000, 5, vec![]), &AddressGuard::default()).expect("client");
    for base in [format!("http://127.0.0.1:{port}/dicom-web"), format!("http://localhost:{port}/dicom-web"), format!("http://[::ffff:127.0.0.1]:{port}/dicom-web")] {
        let err = guarded.series_metadata(&base, "1.2.3").await.expect_err("refused");
        assert!(matches!(err, DicomWebError::Refused { step: Step::SearchSeries }), "{base}: {err}");
        assert!(!err.to_string().contains(&port.to_string()) && !err.to_string().contains("127.0.0.1"), "{err}");
    }
    assert!(listener.accept().is_err(), "no connection reached the listener");
}

/// A PACS that answers with a redirect (here to the real archive) is not followed: the
/// redirect is an HTTP error, and the credentials for the first base go nowhere else.
#[tokio::test]
async fn a_redirect_from_the_pacs_is_not_followed() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let target = dicomweb();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(conn, "HTTP/1.1 302 Found\r\nLocation: {target}/studies\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let err = client().series_metadata(&format!("http://127.0.0.1:{port}/dicom-web"), "1.2.3").await.expect_err("not followed");
    assert!(matches!(err, DicomWebError::Status { status: 302, .. }), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts connections and reads nothing back: a hung PACS.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let quick = DicomWebClient::new(&settings(1200, 600_000_000, 1, vec![]), &loopback()).expect("client");
    let started = Instant::now();
    let err = quick.retrieve_series(&format!("http://127.0.0.1:{port}/dicom-web"), "1.2.3", "4.5.6").await.expect_err("hangs");
    assert!(matches!(err, DicomWebError::Timeout { seconds: 1, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

/// A second Orthanc of our own, with HTTP Basic authentication on, for the credentials tests.
struct AuthOrthanc {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AuthOrthanc {
    fn start() -> AuthOrthanc {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let db = dir.path().join("db");
        let config = serde_json::json!({
            "Name": "neurocds-auth-test", "StorageDirectory": db, "IndexDirectory": db,
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            "HttpPort": port, "RemoteAccessAllowed": false, "AuthenticationEnabled": true,
            "RegisteredUsers": {"cds": "cds-secret"}, "DicomServerEnabled": false,
            "OrthancExplorerEnabled": false, "WebDavEnabled": false,
            "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "Host": format!("127.0.0.1:{port}"), "Ssl": false}
        });
        let path = dir.path().join("orthanc.json");
        std::fs::write(&path, config.to_string()).expect("write config");
        let child = Command::new("Orthanc").arg(&path).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("Orthanc is installed (apt-get install orthanc orthanc-dicomweb)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Orthanc did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        AuthOrthanc { child, port, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for AuthOrthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn basic(base: String, password: &str) -> DicomWebCredential {
    DicomWebCredential { base_url: base, bearer_token: None, username: Some("cds".into()), password: Some(password.into()) }
}

fn bearer(base: String, token: &str) -> DicomWebCredential {
    DicomWebCredential { base_url: base, bearer_token: Some(token.into()), username: None, password: None }
}

#[tokio::test]
async fn credentials_are_chosen_by_the_longest_matching_base_url_and_never_shown() {
    let pacs = AuthOrthanc::start();
    let base = pacs.url("/dicom-web");
    let search = |creds: Vec<DicomWebCredential>| {
        let client = DicomWebClient::new(&settings(1200, 600_000_000, 10, creds), &loopback()).expect("client");
        let base = base.clone();
        async move { client.series_metadata(&base, "1.2.3").await }
    };

    // The longer prefix (the DICOMweb root, right password) wins over the host-wide one.
    let ok = search(vec![bearer(pacs.url(""), "host-wide-token"), basic(pacs.url("/dicom-web/"), "cds-secret")]).await;
    assert!(ok.expect("authorised search").is_empty());

    // The longer prefix (a bearer token Orthanc does not accept) wins over the right password.
    let err = search(vec![basic(pacs.url(""), "cds-secret"), bearer(pacs.url("/dicom-web"), "not-for-orthanc")]).await.expect_err("bearer refused");
    assert!(matches!(err, DicomWebError::Status { status: 401, .. }), "{err}");

    // A prefix that is not on a path boundary does not match.
    let err = search(vec![basic(pacs.url("/dicom-we"), "cds-secret")]).await.expect_err("no credential");
    assert!(matches!(err, DicomWebError::Status { status: 401, .. }), "{err}");

    // A wrong password: the error names the URL but neither the user's secret nor the header.
    let err = search(vec![basic(pacs.url("/dicom-web"), "wrong-secret-123")]).await.expect_err("wrong password");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-secret-123") && !shown.contains("Basic "), "{shown}");
    assert!(shown.contains("/dicom-web/studies/1.2.3/series"), "{shown}");
}
