//! The DICOMweb client: one reqwest client with timeouts, credentials chosen per base URL.

use std::collections::HashSet;
use std::time::Duration;

use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, WARNING};
use serde_json::Value;
use url::Url;

use neurocds_analysis::imaging::dicom_json::{self as metadata, MODALITY, SERIES_INSTANCE_UID};
use super::multipart::{self, Limits};
use super::{DicomWebError, SeriesMetadata, Step};
use crate::config::DicomWebSettings;
use crate::egress::{self, AddressGuard, BodyError, read_capped};
use crate::{
    metrics::{Metrics, Peer},
    telemetry::outbound,
};

const DICOM_JSON: &str = "application/dicom+json";
/// The instances as the archive stores them (no transcoding on the server, the cheapest).
const MULTIPART_AS_STORED: &str = r#"multipart/related; type="application/dicom"; transfer-syntax=*"#;
/// No `transfer-syntax` parameter: the server sends Explicit VR Little Endian (PS3.18
/// 8.7.3.5.2), transcoding what it stores compressed. Asked only when the stored syntax has no
/// decoder in this build (JPEG-LS), because servers may lack the codec to transcode (Orthanc
/// answers 500 for JPEG 2000).
const MULTIPART_DEFAULT: &str = r#"multipart/related; type="application/dicom""#;
/// Series metadata requests in flight at once for one study.
const METADATA_CONCURRENCY: usize = 4;
/// QIDO-RS paging stops here: no study has this many series, and each page must bring a new one,
/// so this also bounds the number of requests.
const MAX_SERIES_PER_STUDY: usize = 10_000;

/// How to authenticate to one DICOMweb base. Never printed: `Debug` is redacted.
#[derive(Clone)]
enum Auth {
    Bearer(String),
    Basic { username: String, password: String },
}

#[derive(Clone)]
struct Credential {
    /// Normalised base URL (no trailing slash, no query, no user info).
    base: String,
    auth: Auth,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Talks QIDO-RS and WADO-RS to any number of archives (the base comes with each call, from
/// the ImagingStudy's endpoint). Cheap to clone; share one per service.
#[derive(Debug, Clone)]
pub struct DicomWebClient {
    http: reqwest::Client,
    guard: AddressGuard,
    timeout: Duration,
    limits_instances: usize,
    limits_bytes: u64,
    qido_page_size: usize,
    credentials: Vec<Credential>,
    metrics: Option<Metrics>,
}

/// A DICOM JSON array, and whether the server said that more results can be requested
/// (a `Warning: 299 …additional results…` header, PS3.18 8.3.4.4: the answer was truncated).
struct JsonArray {
    items: Vec<Value>,
    more_results: bool,
}

/// A series as the study's QIDO-RS search found it.
#[derive(Debug, Clone)]
pub struct FoundSeries {
    /// Recognition's fields as the archive read them from one of the series' instances.
    pub header: SeriesMetadata,
    /// The QIDO-RS answer: the series attributes that a full header falls back on.
    qido: Value,
}

impl FoundSeries {
    /// The header of the series from its retrieved instances (all of them, so the same as
    /// [`DicomWebClient::full_header`] would give, without asking the archive again).
    pub fn header_of(&self, instances: &[DefaultDicomObject]) -> Result<SeriesMetadata, serde_json::Error> {
        let objects: Vec<&dicom_object::InMemDicomObject> = instances.iter().map(|o| &**o).collect();
        metadata::from_objects(&self.header.series_uid, &self.qido, &objects)
    }
}

/// A URL as errors may show it: no user info, no query.
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// The DICOMweb service base of `base`, which may also be a full study or series URL
/// (`…/studies/{uid}[/series/{uid}]`, as some Endpoint.address values are).
fn normalise_base(base: &str) -> Result<Url, DicomWebError> {
    let invalid = |reason: &str| DicomWebError::InvalidBaseUrl { base: base.split('@').next_back().unwrap_or("").to_string(), reason: reason.into() };
    let mut url = Url::parse(base.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    let segments: Vec<String> = url.path_segments().map(|s| s.filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default();
    let keep = segments.iter().position(|s| s == "studies").unwrap_or(segments.len());
    url.set_path(&segments[..keep].join("/"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// `base` with `/segments…` appended.
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn check_uid<'a>(what: &'static str, uid: &'a str) -> Result<&'a str, DicomWebError> {
    let uid = uid.trim();
    let ok = !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if ok { Ok(uid) } else { Err(DicomWebError::InvalidUid { what, uid: uid.to_string() }) }
}

/// A reqwest error with its causes, without the URL (callers add the redacted one).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

impl DicomWebClient {
    /// Builds the client from settings. Credentials are checked by `Settings::check`; a
    /// credential whose base URL does not parse is refused here.
    /// Requests resolve through `guard` and follow no redirect: a redirect would carry the
    /// request, and the credentials of the base it was sent to, past the egress policy.
    pub fn new(settings: &DicomWebSettings, guard: &AddressGuard) -> Result<Self, DicomWebError> {
        let timeout = Duration::from_secs(settings.request_timeout_s.max(1));
        // The whole-request deadline is enforced around each step (so that it becomes a
        // typed `Timeout`); reqwest bounds the connection and each read.
        let http = guard
            .http_client()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .user_agent(concat!("neurocds/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DicomWebError::Client(describe(e)))?;
        let credentials = settings
            .credentials
            .iter()
            .map(|c| {
                let base = shown(&normalise_base(&c.base_url)?).trim_end_matches('/').to_string();
                let auth = match (&c.bearer_token, &c.username, &c.password) {
                    (Some(token), _, _) => Auth::Bearer(token.clone()),
                    (None, Some(u), Some(p)) => Auth::Basic { username: u.clone(), password: p.clone() },
                    _ => return Err(DicomWebError::InvalidBaseUrl { base, reason: "credential needs bearer_token or username and password".into() }),
                };
                Ok(Credential { base, auth })
            })
            .collect::<Result<_, _>>()?;
        Ok(DicomWebClient {
            http,
            guard: guard.clone(),
            timeout,
            limits_instances: settings.max_instances_per_series,
            limits_bytes: settings.max_bytes_per_series,
            qido_page_size: settings.qido_page_size.max(1),
            credentials,
            metrics: None,
        })
    }

    /// Records every request's duration and outcome under `peer="dicomweb"`.
    pub fn with_metrics(mut self, metrics: Metrics) -> DicomWebClient {
        self.metrics = Some(metrics);
        self
    }

    /// The credential whose base URL is the longest prefix (on a path boundary) of `url`.
    fn credential_for(&self, url: &Url) -> Option<&Auth> {
        let target = shown(url);
        self.credentials
            .iter()
            .filter(|c| target.strip_prefix(&c.base).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
            .max_by_key(|c| c.base.len())
            .map(|c| &c.auth)
    }

    /// Sends a GET and checks the status; the caller bounds the time.
    async fn get(&self, step: Step, url: &Url, accept: &str) -> Result<reqwest::Response, DicomWebError> {
        self.guard.check_literal(url).map_err(|_| DicomWebError::Refused { step })?;
        let mut request = self.http.get(url.clone()).header(ACCEPT, accept);
        request = match self.credential_for(url) {
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            Some(Auth::Basic { username, password }) => request.basic_auth(username, Some(password)),
            None => request,
        };
        let result = outbound::send(request, Peer::DicomWeb, "GET", &step.to_string(), self.metrics.as_ref()).await;
        let response = result.map_err(|e| self.request_error(step, url, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(DicomWebError::Status { step, url: shown(url), status: status.as_u16() });
        }
        Ok(response)
    }

    fn request_error(&self, step: Step, url: &Url, e: reqwest::Error) -> DicomWebError {
        if egress::refused_in_chain(&e) {
            DicomWebError::Refused { step }
        } else if e.is_timeout() {
            DicomWebError::Timeout { step, url: shown(url), seconds: self.timeout.as_secs() }
        } else {
            DicomWebError::Request { step, url: shown(url), reason: describe(e) }
        }
    }

    /// Runs one step under the request deadline.
    async fn bounded<T>(&self, step: Step, url: &Url, fut: impl Future<Output = Result<T, DicomWebError>>) -> Result<T, DicomWebError> {
        tokio::time::timeout(self.timeout, fut).await.unwrap_or_else(|_| Err(DicomWebError::Timeout { step, url: shown(url), seconds: self.timeout.as_secs() }))
    }

    /// A DICOM JSON array (QIDO-RS answer or WADO-RS metadata). An empty body (204) is `[]`.
    async fn get_json_array(&self, step: Step, url: &Url) -> Result<JsonArray, DicomWebError> {
        self.bounded(step, url, async {
            let response = self.get(step, url, DICOM_JSON).await?;
            let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let more_results = response.headers().get_all(WARNING).iter().filter_map(|v| v.to_str().ok()).any(|w| w.trim_start().starts_with("299") && w.to_ascii_lowercase().contains("additional result"));
            let body = read_capped(response, self.limits_bytes).await.map_err(|e| match e {
                BodyError::TooLarge { limit } => DicomWebError::TooLarge { step, url: shown(url), limit },
                BodyError::Transport(e) => self.request_error(step, url, e),
            })?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(JsonArray { items: Vec::new(), more_results });
            }
            if !content_type.is_empty() && !content_type.contains("json") {
                return Err(DicomWebError::UnexpectedContentType { step, url: shown(url), content_type });
            }
            let bad_json = |reason: String| DicomWebError::BadJson { step, url: shown(url), reason };
            let parsed = crate::offload::parse_off_runtime(body, |body| serde_json::from_slice::<Value>(body)).await.map_err(|e| bad_json(e.to_string()))?;
            let value = parsed.map_err(|e| bad_json(e.to_string()))?;
            match value {
                Value::Array(items) if items.iter().all(Value::is_object) => Ok(JsonArray { items, more_results }),
                _ => Err(DicomWebError::BadJson { step, url: shown(url), reason: "expected an array of DICOM JSON objects".into() }),
            }
        })
        .await
    }

    /// Every series of a study (QIDO-RS, with `includefield` for what recognition reads), read
    /// in pages of `qido_page_size` (`limit` and `offset`): the next page is asked for while a
    /// page comes back full or the server warns that more results can be requested. A page that
    /// brings no new series ends the search, so a server that ignores `offset` and repeats
    /// itself costs one request more, not a loop.
    async fn search_series(&self, base: &Url, study_uid: &str) -> Result<Vec<(String, Value)>, DicomWebError> {
        let search = join(base, &["studies", study_uid, "series"]);
        let page_size = self.qido_page_size.to_string();
        let mut found: Vec<(String, Value)> = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0usize;
        loop {
            let mut url = search.clone();
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("limit", &page_size).append_pair("offset", &offset.to_string());
                for field in metadata::RECOGNITION_FIELDS {
                    query.append_pair("includefield", field);
                }
            }
            let page = self.get_json_array(Step::SearchSeries, &url).await?;
            let received = page.items.len();
            let before = found.len();
            for series in page.items {
                let Some(uid) = metadata::text(&series, SERIES_INSTANCE_UID) else {
                    return Err(DicomWebError::BadJson { step: Step::SearchSeries, url: shown(&search), reason: "a series without SeriesInstanceUID (0020000E)".into() });
                };
                check_uid("SeriesInstanceUID", &uid)?;
                if seen.insert(uid.clone()) {
                    found.push((uid, series));
                }
            }
            offset += received;
            let last = received < self.qido_page_size && !page.more_results;
            if last || found.len() == before {
                return Ok(found);
            }
            if found.len() >= MAX_SERIES_PER_STUDY {
                tracing::warn!(url = %shown(&search), series = found.len(), "QIDO-RS paging stopped at the series limit");
                return Ok(found);
            }
        }
    }

    /// Every series of a study as its QIDO-RS search describes it: recognition's fields as the
    /// archive read them from one instance of each ([`metadata::from_qido`]). One search (a
    /// request per page); which series then need all their instances is recognition's call.
    pub async fn find_series(&self, base: &str, study_uid: &str) -> Result<Vec<FoundSeries>, DicomWebError> {
        let base = normalise_base(base)?;
        let study_uid = check_uid("StudyInstanceUID", study_uid)?;
        let found = self.search_series(&base, study_uid).await?;
        Ok(found.into_iter().map(|(uid, qido)| FoundSeries { header: metadata::from_qido(&uid, &qido), qido }).collect())
    }

    /// The header of one series from the WADO-RS metadata of all its instances.
    pub async fn full_header(&self, base: &str, study_uid: &str, series: &FoundSeries) -> Result<SeriesMetadata, DicomWebError> {
        let base = normalise_base(base)?;
        let study_uid = check_uid("StudyInstanceUID", study_uid)?;
        let uid = &series.header.series_uid;
        let url = join(&base, &["studies", study_uid, "series", uid, "metadata"]);
        let instances = self.get_json_array(Step::SeriesMetadata, &url).await?;
        Ok(metadata::from_instances(uid, &series.qido, &instances.items))
    }

    /// The header fields of every series of a study: QIDO-RS for the list (every page), then
    /// WADO-RS metadata for each MR series (others keep what QIDO-RS says). Order follows QIDO-RS.
    pub async fn series_metadata(&self, base: &str, study_uid: &str) -> Result<Vec<SeriesMetadata>, DicomWebError> {
        let base = normalise_base(base)?;
        let study_uid = check_uid("StudyInstanceUID", study_uid)?;
        let jobs = self.search_series(&base, study_uid).await?;
        futures_util::stream::iter(jobs)
            .map(|(uid, qido)| {
                let url = join(&base, &["studies", study_uid, "series", &uid, "metadata"]);
                async move {
                    let is_mr = metadata::text(&qido, MODALITY).is_none_or(|m| m.eq_ignore_ascii_case("MR"));
                    if !is_mr {
                        return Ok(metadata::from_qido(&uid, &qido));
                    }
                    let instances = self.get_json_array(Step::SeriesMetadata, &url).await?;
                    Ok(metadata::from_instances(&uid, &qido, &instances.items))
                }
            })
            .buffered(METADATA_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Every instance of one series (WADO-RS, `multipart/related; type="application/dicom"`),
    /// parsed, within `max_instances_per_series`, `max_bytes_per_series` and the request
    /// timeout. Asks for the stored transfer syntax; if this build cannot decode it, asks once
    /// more for the server's default (uncompressed) one.
    pub async fn retrieve_series(&self, base: &str, study_uid: &str, series_uid: &str) -> Result<Vec<DefaultDicomObject>, DicomWebError> {
        let base = normalise_base(base)?;
        let study_uid = check_uid("StudyInstanceUID", study_uid)?;
        let series_uid = check_uid("SeriesInstanceUID", series_uid)?;
        let url = join(&base, &["studies", study_uid, "series", series_uid]);
        let step = Step::RetrieveSeries;
        let limits = Limits { max_instances: self.limits_instances, max_bytes: self.limits_bytes };
        let fetch = |accept: &'static str| {
            let (url, limits) = (&url, &limits);
            self.bounded(step, url, async move {
                let response = self.get(step, url, accept).await?;
                multipart::read_instances(response, &shown(url), limits).await
            })
        };
        let stored = fetch(MULTIPART_AS_STORED).await?;
        if stored.iter().all(|obj| decodable(obj.meta().transfer_syntax())) {
            return Ok(stored);
        }
        drop(stored);
        fetch(MULTIPART_DEFAULT).await
    }
}

/// Whether this build can decode pixel data in a transfer syntax.
fn decodable(uid: &str) -> bool {
    TransferSyntaxRegistry.get(uid.trim_end_matches(['\0', ' '])).is_some_and(|ts| ts.can_decode_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_and_series_urls_normalise_to_the_service_base() {
        for given in [
            "https://pacs.example.org/dicom-web",
            "https://pacs.example.org/dicom-web/",
            "https://pacs.example.org/dicom-web/studies/1.2.3",
            "https://pacs.example.org/dicom-web/studies/1.2.3/series/4.5?x=1",
        ] {
            assert_eq!(normalise_base(given).map(|u| shown(&u)).ok().as_deref(), Some("https://pacs.example.org/dicom-web"), "{given}");
        }
    }

    #[test]
    fn uids_with_path_characters_are_refused() {
        assert!(check_uid("StudyInstanceUID", "1.2.840.10008").is_ok());
        assert!(matches!(check_uid("StudyInstanceUID", "1.2/../x"), Err(DicomWebError::InvalidUid { .. })));
        assert!(matches!(check_uid("StudyInstanceUID", ""), Err(DicomWebError::InvalidUid { .. })));
    }

    #[test]
    fn errors_show_urls_without_user_info() {
        let url = Url::parse("https://alice:secret@pacs.example.org/dicom-web/studies?PatientID=1").expect("literal URL");
        assert_eq!(shown(&url), "https://pacs.example.org/dicom-web/studies");
    }
}
