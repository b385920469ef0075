//! What one analysis asks of the PACS (issue 18): one series search with the fields recognition
//! reads, the two chosen series retrieved, full metadata only for other series that could have
//! been chosen, nothing asked twice — and the same choice, verdict for verdict, as reading every
//! series' metadata first.
//!
//! The PACS is the test Orthanc behind a proxy that records each request's path and query.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::{
    e2e::{load_from, pick_from, small_cohort},
    helpers::{brain_mri_hook, peer, spawn_app_with},
    hooks::decisions,
    hostile_peers::{forward, header, listen, prefetch_pointing_at, request_path},
};
use neurocds::dicomweb::DicomWebClient;
use neurocds_analysis::imaging::{SeriesRules, select_series};

/// The test Orthanc's DICOMweb behind a proxy; every request's path (with its query) is kept.
async fn recording_pacs() -> (String, Arc<Mutex<Vec<String>>>) {
    let upstream = url::Url::parse(&peer("NEUROCDS_TEST_DICOMWEB")).unwrap();
    let origin = upstream.origin().ascii_serialization();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let port = listen(move |socket, head| {
        let (origin, log) = (origin.clone(), log.clone());
        async move {
            let path = request_path(&head);
            log.lock().unwrap().push(path.clone());
            forward(socket, &origin, &path, header(&head, "accept").unwrap_or("*/*")).await;
        }
    })
    .await;
    (format!("http://127.0.0.1:{port}{}", upstream.path().trim_end_matches('/')), asked)
}

#[tokio::test]
async fn an_analysis_searches_once_retrieves_the_two_chosen_series_and_asks_nothing_twice() {
    let app = spawn_app_with(json!({ "hooks": { "order_sign_budget_ms": 60000 } })).await;
    let patient = load_from(small_cohort(), &pick_from(small_cohort(), 1));
    let (pacs, asked) = recording_pacs().await;

    let (status, resp) = app.hook("neurocds-brain-mri-order-sign", &brain_mri_hook("order-sign", &patient, Some(prefetch_pointing_at(&patient, &pacs).await), None)).await;
    assert_eq!(status, 200, "{resp}");
    let rows = decisions(&app).await;
    let row = &rows.last().expect("the decision is audited").record;
    assert_ne!(row.outcome, "unavailable", "{:?}", row.reason);
    let chosen = |which: &str| row.series[which]["series_uid"].as_str().unwrap_or_else(|| panic!("a {which} was chosen: {}", row.series)).to_owned();
    let (t1c, t2) = (chosen("t1c"), chosen("t2"));

    let asked = asked.lock().unwrap().clone();
    let path_of = |p: &String| p.split('?').next().unwrap_or(p).to_owned();
    let searches: Vec<&String> = asked.iter().filter(|p| path_of(p).ends_with("/series")).collect();
    assert_eq!(searches.len(), 1, "one series search: {asked:#?}");
    for field in ["00180080", "00180081", "00180010", "00080008", "00200037"] {
        assert!(searches[0].contains(&format!("includefield={field}")), "the search asks for {field}: {}", searches[0]);
    }
    let retrieved: Vec<String> = asked.iter().map(path_of).filter(|p| p.contains("/series/") && !p.ends_with("/metadata")).collect();
    let series_of = |p: &str| p.trim_end_matches("/metadata").rsplit('/').next().unwrap_or_default().to_owned();
    let mut retrieved_series: Vec<String> = retrieved.iter().map(|p| series_of(p)).collect();
    retrieved_series.sort();
    let mut expected = vec![t1c.clone(), t2.clone()];
    expected.sort();
    assert_eq!(retrieved_series, expected, "only the chosen T1c and T2 are retrieved: {asked:#?}");
    let metadata: Vec<String> = asked.iter().map(path_of).filter(|p| p.ends_with("/metadata")).map(|p| series_of(&p)).collect();
    assert!(!metadata.contains(&t1c) && !metadata.contains(&t2), "a retrieved series' metadata is not asked for as well: {asked:#?}");
    let mut distinct = asked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), asked.len(), "nothing is asked twice: {asked:#?}");

    // The reference: every series' full metadata first, then the choice.
    let guard = neurocds::egress::AddressGuard::new(vec![neurocds::egress::parse_network("127.0.0.0/8").unwrap()]);
    let client = DicomWebClient::new(&app.app.settings.dicomweb, &guard).unwrap();
    let study_uid = row.study_uid.clone().expect("the study is recorded");
    let all = client.series_metadata(&peer("NEUROCDS_TEST_DICOMWEB"), &study_uid).await.expect("series metadata");
    assert!(all.len() > metadata.len() + 2, "some series were settled by the search alone ({} of {})", all.len() - metadata.len() - 2, all.len());
    let reference = select_series(&SeriesRules::default(), &all);
    assert_eq!((reference.t1c.as_deref(), reference.t2.as_deref()), (Some(t1c.as_str()), Some(t2.as_str())));
    assert_eq!(row.series["verdicts"], serde_json::to_value(&reference.verdicts).unwrap(), "the same verdict on every series");
}
