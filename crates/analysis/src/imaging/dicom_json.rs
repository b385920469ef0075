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

/// A series known only from its QIDO-RS answer (not an MR series, so its metadata is not
/// worth fetching).
pub fn from_qido(series_uid: &str, qido: &Value) -> SeriesMetadata {
    SeriesMetadata {
        series_uid: series_uid.to_string(),
        modality: text(qido, MODALITY),
        description: text(qido, SERIES_DESCRIPTION),
        series_number: number(qido, SERIES_NUMBER).map(|n| n as i64),
        instance_count: number(qido, "00201209").map_or(0, |n| n as usize),
        slice_count: number(qido, "00201209").map_or(0, |n| n as usize),
        ..SeriesMetadata::default()
    }
}

/// The series header from the DICOM JSON of all its instances (the WADO-RS series metadata).
pub fn from_instances(series_uid: &str, qido: &Value, instances: &[Value]) -> SeriesMetadata {
    // The lowest InstanceNumber stands for the series; scanners write the same protocol
    // header into every instance.
    let first = instances.iter().min_by(|a, b| number(a, INSTANCE_NUMBER).unwrap_or(f64::MAX).total_cmp(&number(b, INSTANCE_NUMBER).unwrap_or(f64::MAX)));
    let Some(first) = first else {
        return from_qido(series_uid, qido);
    };
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
    // Any instance that records an agent makes the series contrast-enhanced; enhanced MR may
    // instead say so in the Contrast/Bolus Usage functional group.
    let contrast_bolus_agent = instances.iter().find_map(|i| text(i, "00180010")).or_else(|| {
        (text(first, "00189342").as_deref() == Some("YES")).then(|| "administered (ContrastBolusUsageSequence)".to_string())
    });

    SeriesMetadata {
        series_uid: series_uid.to_string(),
        modality: either(MODALITY),
        description: either(SERIES_DESCRIPTION),
        series_number: number(first, SERIES_NUMBER).or_else(|| number(qido, SERIES_NUMBER)).map(|n| n as i64),
        manufacturer: text(first, "00080070"),
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
        instance_count: instances.len(),
        slice_count: instances.iter().map(|i| number(i, NUMBER_OF_FRAMES).map_or(1, |n| n.max(1.0) as usize)).sum(),
        acquisition_time: text(first, "00080032"),
        series_time: text(first, "00080031").or_else(|| text(qido, "00080031")),
        frame_of_reference_uid: text(first, "00200052"),
    }
}

/// The series header from parsed DICOM objects (headers of files on disk; pixel data may be
/// absent): each object goes through DICOM JSON and then [`from_instances`], exactly as a
/// WADO-RS metadata answer would.
pub fn from_objects(series_uid: &str, instances: &[&InMemDicomObject]) -> Result<SeriesMetadata, serde_json::Error> {
    let json = instances.iter().map(|obj| ::dicom_json::to_value(*obj)).collect::<Result<Vec<Value>, _>>()?;
    Ok(from_instances(series_uid, &Value::Object(Default::default()), &json))
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
