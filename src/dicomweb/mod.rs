//! DICOMweb retrieval from the PACS: QIDO-RS, WADO-RS series metadata and instances
//! (`multipart/related; type="application/dicom"`), streamed, with limits.
//!
//! This module speaks HTTP and hands back parsed DICOM: header fields per series
//! ([`SeriesMetadata`], for recognition) and the instances of a chosen series. It does not judge
//! series or touch pixels (that is `imaging`), and it never logs or prints credentials.
//!
//! ```text
//!  find_series:      GET {base}/studies/{study}/series?limit=&offset=&includefield=…  (QIDO-RS, every page)
//!  full_header:      GET {base}/studies/{study}/series/{series}/metadata   (WADO-RS, dicom+json)
//!  series_metadata:  both: the search, then every MR series' metadata (the reference path)
//!  retrieve_series:  GET {base}/studies/{study}/series/{series}            (WADO-RS, multipart/related)
//! ```

mod client;
mod lengths;
pub mod multipart;

pub use client::{DicomWebClient, FoundSeries};
pub use neurocds_analysis::imaging::SeriesMetadata;

/// The request a DICOMweb error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// QIDO-RS search for the series of a study.
    SearchSeries,
    /// WADO-RS metadata of one series.
    SeriesMetadata,
    /// WADO-RS retrieval of the instances of one series.
    RetrieveSeries,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::SearchSeries => "QIDO-RS series search",
            Step::SeriesMetadata => "WADO-RS series metadata",
            Step::RetrieveSeries => "WADO-RS series retrieval",
        })
    }
}

/// A DICOMweb failure. `url` is the request URL without credentials or query; every variant
/// says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum DicomWebError {
    #[error("DICOMweb client cannot be built: {0}")]
    Client(String),
    #[error("DICOMweb base URL {base:?} is not usable: {reason}")]
    InvalidBaseUrl { base: String, reason: String },
    #[error("{what} {uid:?} is not a DICOM UID")]
    InvalidUid { what: &'static str, uid: String },
    /// The address guard refused the archive's address. Says nothing about the target.
    #[error("{step}: the DICOMweb endpoint is not one this service may reach")]
    Refused { step: Step },
    #[error("{step} {url}: request failed: {reason}")]
    Request { step: Step, url: String, reason: String },
    #[error("{step} {url}: no complete answer within {seconds} s")]
    Timeout { step: Step, url: String, seconds: u64 },
    #[error("{step} {url}: HTTP {status}")]
    Status { step: Step, url: String, status: u16 },
    #[error("{step} {url}: unexpected Content-Type {content_type:?}")]
    UnexpectedContentType { step: Step, url: String, content_type: String },
    #[error("{step} {url}: malformed DICOM JSON: {reason}")]
    BadJson { step: Step, url: String, reason: String },
    #[error("{step} {url}: malformed multipart body: {reason}")]
    Multipart { step: Step, url: String, reason: String },
    #[error("{step} {url}: more than {limit} instances (dicomweb.max_instances_per_series)")]
    TooManyInstances { step: Step, url: String, limit: usize },
    #[error("{step} {url}: more than {limit} bytes (dicomweb.max_bytes_per_series)")]
    TooLarge { step: Step, url: String, limit: u64 },
    #[error("{step} {url}: part {part} is not a DICOM instance: {reason}")]
    BadInstance { step: Step, url: String, part: usize, reason: String },
    #[error("{step} {url}: the series has no instances")]
    EmptySeries { step: Step, url: String },
}
