//! The WADO-RS answer for a series: a `multipart/related; type="application/dicom"` body with
//! one Part-10 instance per part, read as a stream so that the per-series limits stop a runaway
//! answer before it fills memory. Each part is parsed on the blocking pool while the next one
//! arrives; a deflated data set counts its inflated size against the series' byte budget before
//! it is inflated into memory, so a deflate bomb is refused, never expanded.

use dicom_object::{DefaultDicomObject, OpenFileOptions};
use futures_util::StreamExt;

use super::{
    DicomWebError, Step,
    lengths::check_declared_lengths,
};

/// The boundary of a `multipart/related` Content-Type. `multer::parse_boundary` only accepts
/// `multipart/form-data`, hence our own.
pub fn related_boundary(content_type: &str) -> Option<String> {
    let m: mime::Mime = content_type.parse().ok()?;
    if m.type_() != mime::MULTIPART || m.subtype().as_str() != "related" {
        return None;
    }
    m.get_param(mime::BOUNDARY).map(|b| b.as_str().to_string())
}

/// Limits on one series' answer.
pub struct Limits {
    pub max_instances: usize,
    pub max_bytes: u64,
}

/// Reads every part of a WADO-RS series answer and parses it as a DICOM file.
pub(crate) async fn read_instances(response: reqwest::Response, url: &str, limits: &Limits) -> Result<Vec<DefaultDicomObject>, DicomWebError> {
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let content_length = response.content_length();
    let body = response.bytes_stream().map(|r| r.map_err(|e| e.without_url()));
    read_multipart(&content_type, content_length, body, url, limits).await
}

/// Reads a `multipart/related; type="application/dicom"` body from any byte stream (the
/// network, or a fuzzer) within `limits`, parsing each part as a Part-10 file.
pub async fn read_multipart<S, O, E>(content_type: &str, content_length: Option<u64>, body: S, url: &str, limits: &Limits) -> Result<Vec<DefaultDicomObject>, DicomWebError>
where
    S: futures_util::Stream<Item = Result<O, E>> + Send + 'static,
    O: Into<bytes::Bytes> + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let step = Step::RetrieveSeries;
    let Some(boundary) = related_boundary(content_type) else {
        return Err(DicomWebError::UnexpectedContentType { step, url: url.into(), content_type: content_type.into() });
    };
    if content_length.is_some_and(|n| n > limits.max_bytes) {
        return Err(DicomWebError::TooLarge { step, url: url.into(), limit: limits.max_bytes });
    }
    let multipart_err = |e: multer::Error| DicomWebError::Multipart { step, url: url.into(), reason: e.to_string() };
    let mut parts = multer::Multipart::new(body, boundary);
    let mut parsing: Vec<tokio::task::JoinHandle<Result<(DefaultDicomObject, u64), String>>> = Vec::new();
    let mut total: u64 = 0;
    while let Some(mut field) = parts.next_field().await.map_err(multipart_err)? {
        if parsing.len() == limits.max_instances {
            return Err(DicomWebError::TooManyInstances { step, url: url.into(), limit: limits.max_instances });
        }
        let part = parsing.len();
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
        let inflate_budget = limits.max_bytes;
        parsing.push(tokio::task::spawn_blocking(move || parse_part(&buf, inflate_budget)));
    }
    if parsing.is_empty() {
        return Err(DicomWebError::EmptySeries { step, url: url.into() });
    }
    let mut instances = Vec::with_capacity(parsing.len());
    let mut inflated: u64 = 0;
    for (part, parsed) in parsing.into_iter().enumerate() {
        let bad = |reason: String| DicomWebError::BadInstance { step, url: url.into(), part, reason };
        let (obj, inflated_bytes) = parsed.await.map_err(|e| bad(format!("parsing stopped: {e}")))?.map_err(bad)?;
        inflated += inflated_bytes;
        if inflated > limits.max_bytes {
            return Err(DicomWebError::TooLarge { step, url: url.into(), limit: limits.max_bytes });
        }
        instances.push(obj);
    }
    Ok(instances)
}

/// Parses one WADO-RS part (or any Part-10 file from outside) as the service does: declared
/// lengths and a deflated data set's inflated size checked first ([`check_declared_lengths`]),
/// then dicom-object. Returns the object with the inflated size of a deflated data set (0 for
/// any other transfer syntax). Blocking.
pub fn parse_part(buf: &[u8], inflate_budget: u64) -> Result<(DefaultDicomObject, u64), String> {
    let inflated = check_declared_lengths(buf, inflate_budget)?;
    // Parts are Part-10 files with their 128-byte preamble; `ReadPreamble::Auto` (the default)
    // also accepts the rare server that strips it.
    let obj = OpenFileOptions::new().from_reader(buf).map_err(|e| e.to_string())?;
    Ok((obj, inflated))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::{FileMetaTable, FileMetaTableBuilder, InMemDicomObject};
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;

    use super::{super::lengths::DEFLATED_EXPLICIT_VR_LE, *};

    fn meta(ts: &str) -> FileMetaTable {
        FileMetaTableBuilder::new()
            .transfer_syntax(ts)
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.4")
            .media_storage_sop_instance_uid("2.25.1")
            .build()
            .unwrap()
    }

    /// A Part-10 file: preamble, `DICM`, meta group, then `dataset` as given.
    fn part10(ts: &str, dataset: &[u8]) -> Vec<u8> {
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        meta(ts).write(&mut file).unwrap();
        file.extend_from_slice(dataset);
        file
    }

    fn deflate(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn a_deflate_bomb_is_refused_by_its_inflated_size_before_it_is_parsed() {
        // 64 MiB of zeros deflates to about 64 KiB: a 1000:1 bomb in miniature.
        let bomb = part10(DEFLATED_EXPLICIT_VR_LE, &deflate(&vec![0u8; 64 << 20]));
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let e = parse_part(&bomb, 16 << 20).map(|_| ()).unwrap_err();
        assert!(e.contains("inflates to more than 16777216 bytes"), "{e}");
    }

    #[test]
    fn a_real_deflated_instance_within_the_budget_parses() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("p-deflated")));
        obj.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(4_u16)));
        let mut dataset = Vec::new();
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(DEFLATED_EXPLICIT_VR_LE).unwrap();
        obj.write_dataset_with_ts(&mut dataset, ts).unwrap();
        let file = part10(DEFLATED_EXPLICIT_VR_LE, &dataset);
        let (parsed, inflated) = parse_part(&file, 1 << 20).unwrap();
        assert!(inflated > 0 && inflated < 1024, "{inflated}");
        assert_eq!(parsed.element(tags::PATIENT_ID).unwrap().to_str().unwrap().trim_end(), "p-deflated");
    }

    /// Fuzzer findings (multipart and part10_volume, 2026-12-06): parts of a few KiB whose
    /// headers claim gigabytes (in the data set, or inside a deflated one) made the parser touch
    /// over 2 GiB before failing. Refused from the headers now.
    #[tokio::test]
    async fn fuzz_findings_parts_claiming_gigabytes_are_refused_from_their_headers() {
        let bodies: [&'static [u8]; 2] = [
            include_bytes!("../../tests/fixtures/fuzz/multipart-huge-element-length.bin"),
            include_bytes!("../../tests/fixtures/fuzz/multipart-deflated-huge-element.bin"),
        ];
        for body in bodies {
            let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(body))]);
            let limits = Limits { max_instances: 64, max_bytes: 8 << 20 };
            let ct = "multipart/related; type=\"application/dicom\"; boundary=fuzz";
            let e = read_multipart(ct, None, stream, "http://pacs/series", &limits).await.unwrap_err().to_string();
            assert!(e.contains("declares") && e.contains("bytes where"), "{e}");
        }
        let part = include_bytes!("../../tests/fixtures/fuzz/part10-huge-element-length.dcm");
        let e = parse_part(part, 8 << 20).map(|_| ()).unwrap_err();
        assert!(e.contains("declares") && e.contains("bytes where"), "{e}");
    }

    /// Fuzzer finding 5 (part10_volume): a 27 KiB implicit-VR instance that cost the parser
    /// 2 s and 4.3 GB before it failed. After the pixel data, an undefined-length element holds
    /// an element header where an item must stand; refused from the headers now, at once. Since
    /// finding 8 the walk stops earlier in this input, at a group length (UL) of 231 bytes; the
    /// item rule itself is `lengths::tests::what_is_neither_an_item_nor_a_delimiter_inside_a_sequence_is_refused`.
    #[test]
    fn fuzz_finding_an_element_where_an_item_must_be_is_refused_from_the_headers() {
        let part = include_bytes!("../../tests/fixtures/fuzz/part10-element-where-an-item-must-be.dcm");
        let e = parse_part(part, 8 << 20).map(|_| ()).unwrap_err();
        assert_eq!(e, "element (0000,0000) UL declares 231 bytes, not a whole number of 4-byte values");
    }

    /// FUZZING.md finding 10 (`part10_volume`): a JPEG-LS fixture spoilt into explicit VR with a
    /// stray sequence delimiter; the length walk stopped there, the parser read on to a header
    /// claiming 3.7 GB and reserved 2 GB for it.
    #[test]
    fn fuzz_finding_a_stray_delimiter_hides_nothing_from_the_length_walk() {
        let part = include_bytes!("../../tests/fixtures/fuzz/part10-stray-delimiter.dcm");
        let e = parse_part(part, 8 << 20).map(|_| ()).unwrap_err();
        assert!(e.starts_with("a delimiter outside any sequence"), "{e}");
    }

    /// FUZZING.md findings 7 and 8: a JPEG 2000 part whose Pixel Data tag was spoilt to
    /// (7FE0,6D10), and a T2 part whose SOP Class UID became a UL of 26 bytes; the parser touched
    /// 1 GiB and 738 MiB for them before giving up.
    #[tokio::test]
    async fn memory_benchmark_findings_values_the_parser_would_misread_are_refused_from_the_headers() {
        let cases: [(&'static [u8], &str); 2] = [
            (include_bytes!("../../tests/fixtures/fuzz/multipart-ow-undefined-length.bin"), "part 0 is not a DICOM instance: element (7FE0,6D10) OW declares an undefined length"),
            (include_bytes!("../../tests/fixtures/fuzz/multipart-ul-of-26-bytes.bin"), "part 1 is not a DICOM instance: element (0008,0016) UL declares 26 bytes, not a whole number of 4-byte values"),
        ];
        for (body, refusal) in cases {
            let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(body))]);
            let limits = Limits { max_instances: 64, max_bytes: 8 << 20 };
            let ct = "multipart/related; type=\"application/dicom\"; boundary=fuzz";
            let e = read_multipart(ct, None, stream, "http://pacs/series", &limits).await.unwrap_err().to_string();
            assert!(e.contains(refusal), "{e}");
        }
    }

    #[test]
    fn other_transfer_syntaxes_are_not_inflated() {
        assert_eq!(check_declared_lengths(&part10("1.2.840.10008.1.2.1", &[]), 0).unwrap(), 0);
        assert_eq!(check_declared_lengths(b"not dicom at all", 0).unwrap(), 0);
    }

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
