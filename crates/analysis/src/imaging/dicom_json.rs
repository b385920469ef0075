//! DICOM JSON (PS3.18 F.2) to [`SeriesMetadata`]: the header fields series recognition needs.
//!
//! One reader for both ways a study arrives: the WADO-RS metadata of a PACS (DICOM JSON as the
//! server writes it) and DICOM files on disk (`evaluate --cohort DIR`), whose headers are first
//! serialised to DICOM JSON ([`from_objects`]) so that series recognition sees the same fields
//! either way.
//!
//! A DICOM JSON object maps an 8-hex-digit tag to `{"vr": "..", "Value": [..]}`. Servers differ:
//! DS/IS may come as JSON numbers or strings, empty attributes have no `Value`, and an enhanced
//! multi-frame instance keeps TR, TE, orientation and spacing inside its functional groups
//! (shared `52009229`, per-frame `52009230`). Every reader here tolerates a missing tag.

use serde_json::Value;

use dicom_object::InMemDicomObject;

use super::SeriesMetadata;

pub const SERIES_INSTANCE_UID: &str = "0020000E";
pub const MODALITY: &str = "00080060";
pub(crate) const SERIES_DESCRIPTION: &str = "0008103E";
pub(crate) const SERIES_NUMBER: &str = "00200011";
const INSTANCE_NUMBER: &str = "00200013";
const NUMBER_OF_FRAMES: &str = "00280008";
const SHARED_GROUPS: &str = "52009229";
const PER_FRAME_GROUPS: &str = "52009230";

/// The `Value` array of a tag, if present and non-empty.
fn values<'a>(obj: &'a Value, tag: &str) -> Option<&'a Vec<Value>> {
    obj.get(tag)?.get("Value")?.as_array().filter(|v| !v.is_empty())
}

/// The `Value` of a tag at the top level, else inside the first item of a functional-group
/// macro (shared groups first, then the first frame's groups).
fn values_anywhere<'a>(obj: &'a Value, tag: &str) -> Option<&'a Vec<Value>> {
    values(obj, tag).or_else(|| {
        [SHARED_GROUPS, PER_FRAME_GROUPS].iter().find_map(|group| {
            let item = values(obj, group)?.first()?.as_object()?;
            item.values().find_map(|macro_seq| {
                let macro_item = macro_seq.get("Value")?.as_array()?.first()?;
                values(macro_item, tag)
            })
        })
    })
}

fn as_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        // Person names: {"Alphabetic": ".."}.
        Value::Object(o) => o.get("Alphabetic")?.as_str()?.trim().to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn text(obj: &Value, tag: &str) -> Option<String> {
    values_anywhere(obj, tag)?.first().and_then(as_text)
}

fn texts(obj: &Value, tag: &str) -> Vec<String> {
    values_anywhere(obj, tag).map(|v| v.iter().filter_map(as_text).collect()).unwrap_or_default()
}

fn numbers(obj: &Value, tag: &str) -> Vec<f64> {
    values_anywhere(obj, tag).map(|v| v.iter().filter_map(as_number).collect()).unwrap_or_default()
}

pub(crate) fn number(obj: &Value, tag: &str) -> Option<f64> {
    numbers(obj, tag).first().copied()
}

/// What series recognition reads, as QIDO-RS `includefield` values: asked with the series
/// search, an archive answers them from one instance of each series ([`from_qido`]).
/// Enhanced multi-frame timing lives in functional groups, which archives do not return at the
/// series level; such a series is read again from all its instances
/// ([`crate::imaging::series::needs_all_instances`]).
pub const RECOGNITION_FIELDS: &[&str] = &[
    MODALITY,
    SERIES_DESCRIPTION,
    SERIES_NUMBER,
    "00080070", // Manufacturer
    "00180087", // MagneticFieldStrength
    "00180080", // RepetitionTime
    "00180081", // EchoTime
    "00180082", // InversionTime
    "00180020", // ScanningSequence
    "00180021", // SequenceVariant
    "00180010", // ContrastBolusAgent
    "00080008", // ImageType
    "00180023", // MRAcquisitionType
    "00200037", // ImageOrientationPatient
    "00280030", // PixelSpacing
    "00180050", // SliceThickness
    "00280010", // Rows
    "00280011", // Columns
    NUMBER_OF_FRAMES,
    "00201209", // NumberOfSeriesRelatedInstances
    "00080032", // AcquisitionTime
    "00080031", // SeriesTime
    "00200052", // FrameOfReferenceUID
];

/// A series as its QIDO-RS answer describes it: the series attributes, and whatever
/// [`RECOGNITION_FIELDS`] the archive read from one of its instances. Slices are the related
/// instances times that instance's frames.
pub fn from_qido(series_uid: &str, qido: &Value) -> SeriesMetadata {
    let instances = number(qido, "00201209").map_or(0, |n| n.max(0.0) as usize);
    let frames = number(qido, NUMBER_OF_FRAMES).map_or(1, |n| n.max(1.0) as usize);
    header(series_uid, qido, qido, text(qido, "00180010"), instances, instances.saturating_mul(frames))
}

/// The series header from the DICOM JSON of all its instances (the WADO-RS series metadata).
pub fn from_instances(series_uid: &str, qido: &Value, instances: &[Value]) -> SeriesMetadata {
    // The lowest InstanceNumber stands for the series; scanners write the same protocol
    // header into every instance.
    let first = instances.iter().min_by(|a, b| number(a, INSTANCE_NUMBER).unwrap_or(f64::MAX).total_cmp(&number(b, INSTANCE_NUMBER).unwrap_or(f64::MAX)));
    let Some(first) = first else {
        return from_qido(series_uid, qido);
    };
    // Any instance that records an agent makes the series contrast-enhanced; enhanced MR may
    // instead say so in the Contrast/Bolus Usage functional group.
    let contrast_bolus_agent = instances.iter().find_map(|i| text(i, "00180010")).or_else(|| {
        (text(first, "00189342").as_deref() == Some("YES")).then(|| "administered (ContrastBolusUsageSequence)".to_string())
    });
    let slices = instances.iter().map(|i| number(i, NUMBER_OF_FRAMES).map_or(1, |n| n.max(1.0) as usize)).sum();
    header(series_uid, first, qido, contrast_bolus_agent, instances.len(), slices)
}

/// The header read from `first` (an instance, or a QIDO-RS answer), with the series attributes
/// `qido` gives as fallbacks.
fn header(series_uid: &str, first: &Value, qido: &Value, contrast_bolus_agent: Option<String>, instance_count: usize, slice_count: usize) -> SeriesMetadata {
    let either = |tag: &str| text(first, tag).or_else(|| text(qido, tag));
    let six = numbers(first, "00200037");
    let two = numbers(first, "00280030");

    let mut scanning_sequence = texts(first, "00180020");
    if scanning_sequence.is_empty() {
        // Enhanced MR replaces ScanningSequence by EchoPulseSequence and InversionRecovery.
        match text(first, "00189008").as_deref() {
            Some("SPIN") => scanning_sequence.push("SE".into()),
            Some("GRADIENT") => scanning_sequence.push("GR".into()),
            Some("BOTH") => scanning_sequence.extend(["SE".into(), "GR".into()]),
            _ => {}
        }
        if text(first, "00189009").as_deref() == Some("YES") {
            scanning_sequence.push("IR".into());
        }
    }

    SeriesMetadata {
        series_uid: series_uid.to_string(),
        modality: either(MODALITY),
        description: either(SERIES_DESCRIPTION),
        series_number: number(first, SERIES_NUMBER).or_else(|| number(qido, SERIES_NUMBER)).map(|n| n as i64),
        manufacturer: text(first, "00080070"),
        magnetic_field_strength_t: number(first, "00180087"),
        repetition_time_ms: number(first, "00180080"),
        // EffectiveEchoTime is where enhanced MR keeps TE.
        echo_time_ms: number(first, "00180081").or_else(|| number(first, "00189082")),
        inversion_time_ms: number(first, "00180082").or_else(|| number(first, "00189079")),
        scanning_sequence,
        sequence_variant: texts(first, "00180021"),
        contrast_bolus_agent,
        image_type: texts(first, "00080008"),
        mr_acquisition_type: text(first, "00180023"),
        image_orientation: six.as_slice().try_into().ok(),
        pixel_spacing: two.as_slice().try_into().ok(),
        slice_thickness: number(first, "00180050"),
        rows: number(first, "00280010").map(|n| n as u32),
        columns: number(first, "00280011").map(|n| n as u32),
        instance_count,
        slice_count,
        acquisition_time: text(first, "00080032"),
        series_time: text(first, "00080031").or_else(|| text(qido, "00080031")),
        frame_of_reference_uid: text(first, "00200052"),
    }
}

/// The series header from parsed DICOM objects (headers of files on disk, or instances
/// retrieved over WADO-RS): each object's header — everything but the pixel data, which is
/// neither read nor copied — goes through DICOM JSON and then [`from_instances`], exactly as a
/// WADO-RS metadata answer would. `qido` gives the series attributes as fallbacks (`{}` if none).
pub fn from_objects(series_uid: &str, qido: &Value, instances: &[&InMemDicomObject]) -> Result<SeriesMetadata, serde_json::Error> {
    let json = instances
        .iter()
        .map(|obj| {
            let header = InMemDicomObject::from_element_iter(obj.iter().filter(|e| e.header().tag.group() != 0x7FE0).cloned());
            ::dicom_json::to_value(&header)
        })
        .collect::<Result<Vec<Value>, _>>()?;
    Ok(from_instances(series_uid, qido, &json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_read_from_json_numbers_and_strings() {
        let obj = json!({"00180080": {"vr": "DS", "Value": [2300]}, "00180081": {"vr": "DS", "Value": ["2.26"]}});
        assert_eq!(number(&obj, "00180080"), Some(2300.0));
        assert_eq!(number(&obj, "00180081"), Some(2.26));
        assert_eq!(number(&obj, "00180082"), None);
    }

    #[test]
    fn enhanced_mr_timing_is_read_from_the_shared_functional_groups() {
        let obj = json!({
            "52009229": {"vr": "SQ", "Value": [{
                "00189112": {"vr": "SQ", "Value": [{"00180080": {"vr": "FD", "Value": [8.1]}}]},
                "00189114": {"vr": "SQ", "Value": [{"00189082": {"vr": "FD", "Value": [3.7]}}]}
            }]},
            "00189008": {"vr": "CS", "Value": ["GRADIENT"]}
        });
        let m = from_instances("1.2", &json!({}), &[obj]);
        assert_eq!(m.repetition_time_ms, Some(8.1));
        assert_eq!(m.echo_time_ms, Some(3.7));
        assert_eq!(m.scanning_sequence, vec!["GR".to_string()]);
    }
}
