//! Series discovery: from a study UID to the chosen T1c and T2, their instances in hand, asking
//! the archive for no more than the choice needs.
//!
//! 1. **One search.** QIDO-RS with `includefield` for what recognition reads gives every series
//!    as one of its instances describes it (`DicomWebClient::find_series`).
//! 2. **A provisional choice, retrieved at once.** Recognition picks a T1c and a T2 from those
//!    headers, and both are retrieved (WADO-RS) while the full metadata of the other series
//!    whose verdict their other instances could change
//!    ([`needs_all_instances`]: other T1s and T2s, series without timing, series recording an
//!    agent) is fetched beside them. Settled series (localisers, FLAIR, diffusion) cost nothing
//!    more.
//! 3. **The choice made again on full headers**: those of the retrieved series are read from
//!    the instances themselves, the others from their metadata. It is the same choice as when
//!    every series' metadata is read first (`DicomWebClient::series_metadata`, the reference
//!    path, kept for tests and benchmarks); if it differs from the provisional one — a T1 whose
//!    agent sits in a later instance, say — the series chosen now are retrieved.
//!
//! So a usual study costs one search and two retrievals in parallel, and no series is fetched
//! twice. Stage timings: `series_metadata` is the search, `retrieval` everything from the
//! provisional choice to the instances in hand (metadata fetched beside it included).

use std::collections::BTreeMap;

use dicom_object::DefaultDicomObject;
use futures_util::{StreamExt, TryStreamExt};

use super::analysis::Stopwatch;
use crate::{
    dicomweb::{DicomWebClient, DicomWebError, FoundSeries, SeriesMetadata},
    fhir::study::PriorStudy,
};
use neurocds_analysis::imaging::series::{SeriesRules, SeriesSelection, needs_all_instances, select_series};

/// Full-header requests in flight at once for one study (beside the two retrievals).
const HEADER_CONCURRENCY: usize = 4;

/// The instances of one series.
pub type Instances = Vec<DefaultDicomObject>;

/// What discovery found: every series' header, the choice made on them, and — when both a T1c
/// and a T2 were chosen — their instances or why they could not be retrieved.
pub struct Discovered {
    /// In QIDO-RS order; full headers for every series recognition needed them of.
    pub metadata: Vec<SeriesMetadata>,
    pub selection: SeriesSelection,
    pub instances: Option<Result<(Instances, Instances), DicomWebError>>,
}

/// Where discovery stopped: the archive could not list or describe the series.
#[derive(Debug)]
pub struct DiscoveryFailed(pub DicomWebError);

/// Finds the series of `study` at `base`, chooses the T1c and T2 and retrieves them; times the
/// search as `series_metadata` and the rest as `retrieval` on `watch`.
pub async fn discover(
    dicomweb: &DicomWebClient,
    rules: &SeriesRules,
    study: &PriorStudy,
    base: &str,
    watch: &mut Stopwatch,
) -> Result<Discovered, DiscoveryFailed> {
    let study_uid = study.study_uid.as_str();
    let found = dicomweb.find_series(base, study_uid).await.map_err(DiscoveryFailed)?;
    watch.lap("series_metadata");

    let provisional: Vec<SeriesMetadata> = found.iter().map(|f| f.header.clone()).collect();
    let guess = select_series(rules, &provisional);
    let needs = needs_all_instances(rules, &provisional);
    let retrieve = |uid: String| async move {
        let at = study.dicomweb_for(&uid).unwrap_or(base);
        let instances = dicomweb.retrieve_series(at, study_uid, &uid).await;
        (uid, instances)
    };
    let guessed: Vec<String> = match (&guess.t1c, &guess.t2) {
        (Some(a), Some(b)) => vec![a.clone(), b.clone()],
        _ => Vec::new(),
    };
    // Full headers of every series that needs them, except those being retrieved.
    let wanted: Vec<FoundSeries> = found.iter().zip(&needs).filter(|(f, need)| **need && !guessed.contains(&f.header.series_uid)).map(|(f, _)| f.clone()).collect();
    let headers = futures_util::stream::iter(wanted)
        .map(|f: FoundSeries| async move { dicomweb.full_header(base, study_uid, &f).await.map(|h| (f.header.series_uid, h)) })
        .buffer_unordered(HEADER_CONCURRENCY)
        .try_collect::<Vec<_>>();
    let retrievals = futures_util::future::join_all(guessed.iter().cloned().map(retrieve));
    let (headers, mut retrieved) = tokio::join!(headers, retrievals);
    let mut full: BTreeMap<String, SeriesMetadata> = headers.map_err(DiscoveryFailed)?.into_iter().collect();
    for (uid, instances) in &retrieved {
        let Ok(instances) = instances else { continue };
        let Some(series) = found.iter().find(|f| &f.header.series_uid == uid) else { continue };
        let header = match series.header_of(instances) {
            Ok(h) => h,
            // Instances this reader cannot serialise: their metadata says the same.
            Err(_) => dicomweb.full_header(base, study_uid, series).await.map_err(DiscoveryFailed)?,
        };
        full.insert(uid.clone(), header);
    }
    let metadata: Vec<SeriesMetadata> = found.into_iter().map(|f| full.remove(&f.header.series_uid).unwrap_or(f.header)).collect();
    let selection = select_series(rules, &metadata);

    let instances = match (&selection.t1c, &selection.t2) {
        (Some(t1c), Some(t2)) => {
            // What the provisional choice retrieved, else retrieve now.
            let mut take = async |uid: &String| match retrieved.iter().position(|(u, _)| u == uid) {
                Some(i) => retrieved.swap_remove(i).1,
                None => retrieve(uid.clone()).await.1,
            };
            let t1c = take(t1c).await;
            let t2 = take(t2).await;
            Some(t1c.and_then(|a| t2.map(|b| (a, b))))
        }
        _ => None,
    };
    watch.lap("retrieval");
    Ok(Discovered { metadata, selection, instances })
}
