//! The WADO-RS answer for a series: a `multipart/related; type="application/dicom"` body with
//! one Part-10 instance per part, read as a stream so that the per-series limits stop a runaway
//! answer before it fills memory.

use dicom_object::{DefaultDicomObject, OpenFileOptions};
use futures_util::StreamExt;

use super::{DicomWebError, Step};

/// The boundary of a `multipart/related` Content-Type. `multer::parse_boundary` only accepts
/// `multipart/form-data`, hence our own.
pub(crate) fn related_boundary(content_type: &str) -> Option<String> {
    let m: mime::Mime = content_type.parse().ok()?;
    if m.type_() != mime::MULTIPART || m.subtype().as_str() != "related" {
        return None;
    }
    m.get_param(mime::BOUNDARY).map(|b| b.as_str().to_string())
}

/// Limits on one series' answer.
pub(crate) struct Limits {
    pub max_instances: usize,
    pub max_bytes: u64,
}

/// Reads every part of a WADO-RS series answer and parses it as a DICOM file.
pub(crate) async fn read_instances(response: reqwest::Response, url: &str, limits: &Limits) -> Result<Vec<DefaultDicomObject>, DicomWebError> {
    let step = Step::RetrieveSeries;
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let Some(boundary) = related_boundary(&content_type) else {
        return Err(DicomWebError::UnexpectedContentType { step, url: url.into(), content_type });
    };
    if response.content_length().is_some_and(|n| n > limits.max_bytes) {
        return Err(DicomWebError::TooLarge { step, url: url.into(), limit: limits.max_bytes });
    }
    let multipart_err = |e: multer::Error| DicomWebError::Multipart { step, url: url.into(), reason: e.to_string() };
    let body = response.bytes_stream().map(|r| r.map_err(|e| e.without_url()));
    let mut parts = multer::Multipart::new(body, boundary);
    let mut instances = Vec::new();
    let mut total: u64 = 0;
    while let Some(mut field) = parts.next_field().await.map_err(multipart_err)? {
        if instances.len() == limits.max_instances {
            return Err(DicomWebError::TooManyInstances { step, url: url.into(), limit: limits.max_instances });
        }
        let part = instances.len();
        if let Some(ct) = field.content_type().filter(|ct| ct.essence_str() != "application/dicom") {
            return Err(DicomWebError::BadInstance { step, url: url.into(), part, reason: format!("Content-Type {ct}") });
        }
        let mut buf = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_err)? {
            total += chunk.len() as u64;
            if total > limits.max_bytes {
                return Err(DicomWebError::TooLarge { step, url: url.into(), limit: limits.max_bytes });
            }
            buf.extend_from_slice(&chunk);
        }
        // Parts are Part-10 files with their 128-byte preamble; `ReadPreamble::Auto` (the
        // default) also accepts the rare server that strips it.
        let obj = OpenFileOptions::new().from_reader(buf.as_slice()).map_err(|e| DicomWebError::BadInstance { step, url: url.into(), part, reason: e.to_string() })?;
        instances.push(obj);
    }
    if instances.is_empty() {
        return Err(DicomWebError::EmptySeries { step, url: url.into() });
    }
    Ok(instances)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_read_from_a_multipart_related_content_type() {
        let ct = r#"multipart/related; type="application/dicom"; boundary=7a1c-42"#;
        assert_eq!(related_boundary(ct).as_deref(), Some("7a1c-42"));
    }

    #[test]
    fn form_data_and_json_are_not_a_wado_series_answer() {
        assert_eq!(related_boundary("multipart/form-data; boundary=x"), None);
        assert_eq!(related_boundary("application/dicom+json"), None);
        assert_eq!(related_boundary(r#"multipart/related; type="application/dicom""#), None);
    }
}
