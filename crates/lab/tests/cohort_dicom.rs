//! Written synthetic studies are real DICOM: they round-trip through dicom-object and pydicom
//! with the geometry of the in-memory volumes, dcm2niix converts them, and `neurocds-lab synth`
//! writes the same bytes for the same seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_dictionary_std::tags;
use neurocds_lab::cohort::cli::write_cohort;
use neurocds_lab::cohort::dicom::{series_number, write_study};
use neurocds_lab::cohort::{CohortSpec, SeriesKind, generate_case};
use sha2::{Digest, Sha256};

const TOOLS_PYTHON: &str = ".cache/neurocds/tools-venv/bin/python";

fn tools_python() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(TOOLS_PYTHON)
}

fn floats(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> Vec<f64> {
    obj.element(tag)
        .unwrap_or_else(|e| panic!("missing {tag}: {e}"))
        .to_multi_float64()
        .unwrap_or_else(|e| panic!("{tag} is not numeric: {e}"))
}

fn text(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|e| panic!("missing {tag}: {e}"))
        .to_str()
        .unwrap_or_else(|e| panic!("{tag} is not text: {e}"))
        .trim_end_matches(['\0', ' '])
        .to_string()
}

#[test]
fn written_t1c_round_trips_through_dicom_object_with_the_volume_geometry_and_voxels() {
    let dir = tempfile::tempdir().expect("temp dir");
    let case = generate_case(&CohortSpec::new(3, 10), 1);
    let study = write_study(&case, dir.path()).expect("study written");
    assert_eq!(study.series.len(), 5);
    let t1c = study.series(SeriesKind::T1PostContrast).expect("T1c series");
    assert_eq!(t1c.files.len(), case.t1c.data.shape()[0]);
    let a = case.t1c.affine;
    for (k, path) in t1c.files.iter().enumerate() {
        let obj = dicom_object::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), "1.2.840.10008.1.2.1");
        assert_eq!(text(&obj, tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.4");
        assert_eq!(text(&obj, tags::SERIES_INSTANCE_UID), case.t1c.series_uid);
        assert_eq!(text(&obj, tags::STUDY_INSTANCE_UID), case.study_uid);
        assert_eq!(Some(text(&obj, tags::FRAME_OF_REFERENCE_UID)), case.t1c.frame_of_reference_uid);
        let ipp = floats(&obj, tags::IMAGE_POSITION_PATIENT);
        for r in 0..3 {
            let expected = a[r][2] * k as f64 + a[r][3];
            assert!((ipp[r] - expected).abs() < 1e-4, "slice {k} axis {r}: {} vs {expected}", ipp[r]);
        }
        assert_eq!(floats(&obj, tags::IMAGE_ORIENTATION_PATIENT), vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(floats(&obj, tags::PIXEL_SPACING), vec![case.t1c.spacing[1], case.t1c.spacing[0]]);
        let slope = floats(&obj, tags::RESCALE_SLOPE)[0];
        let intercept = floats(&obj, tags::RESCALE_INTERCEPT)[0];
        let bytes = obj.element(tags::PIXEL_DATA).expect("pixel data").to_bytes().expect("pixel bytes");
        let slice = case.t1c.data.index_axis(ndarray::Axis(0), k);
        assert_eq!(bytes.len(), slice.len() * 2);
        for (chunk, &v) in bytes.chunks_exact(2).zip(slice.iter()) {
            let stored = u16::from_le_bytes([chunk[0], chunk[1]]) as f64;
            let real = stored * slope + intercept;
            assert!((real - v as f64).abs() <= 1e-3 * (1.0 + v.abs() as f64), "{real} vs {v}");
        }
        if k == 0 {
            assert!(!text(&obj, tags::CONTRAST_BOLUS_AGENT).is_empty());
        }
    }
    // The T2 of the same session shares the frame of reference but has its own series UID.
    let t2_first = dicom_object::open_file(&study.series(SeriesKind::T2).expect("T2").files[0]).expect("T2 file");
    assert_eq!(Some(text(&t2_first, tags::FRAME_OF_REFERENCE_UID)), case.t2.frame_of_reference_uid);
    assert_eq!(text(&t2_first, tags::SERIES_INSTANCE_UID), case.t2.series_uid);
    assert!(t2_first.element(tags::CONTRAST_BOLUS_AGENT).is_err(), "pre-contrast series must not name an agent");
}

/// Reads every file of a study with pydicom and summarises each series as JSON.
const PYDICOM_SUMMARY: &str = r#"
import json, sys, pathlib, pydicom
series = {}
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.dcm")):
    d = pydicom.dcmread(path)
    px = d.pixel_array
    s = series.setdefault(str(d.SeriesInstanceUID), {
        "number": int(d.SeriesNumber), "description": str(d.SeriesDescription),
        "time": str(d.AcquisitionTime), "agent": str(d.get("ContrastBolusAgent", "")),
        "frame": str(d.get("FrameOfReferenceUID", "")), "image_type": list(d.ImageType),
        "tr": float(d.RepetitionTime), "te": float(d.EchoTime), "ti": float(d.get("InversionTime", 0) or 0),
        "field": float(d.MagneticFieldStrength), "sex": str(d.PatientSex), "age": str(d.PatientAge),
        "institution": str(d.InstitutionName), "manufacturer": str(d.Manufacturer),
        "study": str(d.StudyInstanceUID), "positions": [], "shape": list(px.shape), "max_real": 0.0})
    s["positions"].append([float(x) for x in d.ImagePositionPatient])
    s["max_real"] = max(s["max_real"], float(px.max()) * float(d.RescaleSlope) + float(d.RescaleIntercept))
print(json.dumps(sorted(series.values(), key=lambda s: s["number"])))
"#;

#[test]
fn pydicom_reads_every_file_and_sees_the_session_in_acquisition_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = CohortSpec::new(17, 10);
    let case = generate_case(&spec, 2);
    let study = write_study(&case, dir.path()).expect("study written");
    let output = Command::new(tools_python())
        .arg("-c")
        .arg(PYDICOM_SUMMARY)
        .arg(&study.study_dir)
        .output()
        .expect("the tools venv python runs (see preamble: ~/.cache/neurocds/tools-venv)");
    assert!(output.status.success(), "pydicom failed: {}", String::from_utf8_lossy(&output.stderr));
    let series: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("JSON summary");
    assert_eq!(series.len(), 5);

    let expected_order = [SeriesKind::Localiser, SeriesKind::T1Pre, SeriesKind::T2, SeriesKind::Flair, SeriesKind::T1PostContrast];
    let times: Vec<&str> = series.iter().map(|s| s["time"].as_str().unwrap_or("")).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "acquisition times not increasing: {times:?}");
    let site = case.site_profile();
    for (s, kind) in series.iter().zip(expected_order) {
        assert_eq!(s["number"].as_u64(), Some(series_number(case.vendor, kind) as u64));
        assert_eq!(s["description"].as_str(), Some(site.protocol(kind).description));
        assert_eq!(s["study"].as_str(), Some(case.study_uid.as_str()));
        assert_eq!(s["institution"].as_str(), Some(case.site.as_str()));
        assert_eq!(s["field"].as_f64(), Some(case.field_strength_t));
        assert_eq!(s["sex"].as_str(), Some(case.sex.dicom_code()));
        assert_eq!(s["age"].as_str(), Some(format!("{:03}Y", case.age).as_str()));
        let has_agent = !s["agent"].as_str().unwrap_or("").is_empty();
        assert_eq!(has_agent, kind == SeriesKind::T1PostContrast, "{kind:?} agent {:?}", s["agent"]);
        assert!(s["max_real"].as_f64().unwrap_or(0.0) > 0.0, "{kind:?} is blank");
    }
    // FLAIR is an inversion recovery; T2 is a long-TR long-TE spin echo.
    assert!(series[3]["ti"].as_f64().unwrap_or(0.0) > 1500.0);
    assert!(series[2]["tr"].as_f64().unwrap_or(0.0) > 2000.0 && series[2]["te"].as_f64().unwrap_or(0.0) > 75.0);
    // Axial series share the frame of reference and step along +z by the slice spacing.
    let frame = series[1]["frame"].as_str().unwrap_or("");
    for s in &series[1..] {
        assert_eq!(s["frame"].as_str(), Some(frame));
        let z: Vec<f64> = s["positions"].as_array().expect("positions").iter().map(|p| p[2].as_f64().unwrap_or(f64::NAN)).collect();
        assert!(z.windows(2).all(|w| ((w[1] - w[0]) - case.t1c.spacing[2]).abs() < 1e-4), "uneven slice steps: {z:?}");
    }
    assert_eq!(series[0]["positions"].as_array().map(|p| p.len()), Some(3), "three-plane localiser");
}

/// Dimensions and voxel sizes from a NIfTI-1 header (`dim` at byte 40, `pixdim` at byte 76).
fn nifti_dims(path: &Path) -> ([i16; 3], [f32; 3]) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let i16_at = |o: usize| i16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let f32_at = |o: usize| f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    ([i16_at(42), i16_at(44), i16_at(46)], [f32_at(80), f32_at(84), f32_at(88)])
}

#[test]
fn dcm2niix_converts_the_axial_series_to_volumes_of_the_grid_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nifti = tempfile::tempdir().expect("temp dir");
    let case = generate_case(&CohortSpec::new(23, 10), 0);
    let study = write_study(&case, dir.path()).expect("study written");
    let output = Command::new("dcm2niix")
        .args(["-f", "%s", "-z", "n", "-o"])
        .arg(nifti.path())
        .arg(&study.study_dir)
        .output()
        .expect("dcm2niix is installed (Debian package dcm2niix)");
    assert!(output.status.success(), "dcm2niix failed: {}", String::from_utf8_lossy(&output.stderr));
    let shape = case.t1c.data.shape();
    for kind in [SeriesKind::T1Pre, SeriesKind::T2, SeriesKind::Flair, SeriesKind::T1PostContrast] {
        let path = nifti.path().join(format!("{}.nii", series_number(case.vendor, kind)));
        let (dims, pixdim) = nifti_dims(&path);
        assert_eq!(dims, [shape[2] as i16, shape[1] as i16, shape[0] as i16], "{kind:?}");
        for a in 0..3 {
            assert!((pixdim[a] as f64 - case.t1c.spacing[a]).abs() < 1e-3, "{kind:?} pixdim {pixdim:?}");
        }
    }
}

fn hash_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("readable file");
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

#[test]
fn two_runs_with_the_same_seed_write_identical_files_whatever_the_thread_count() {
    let (a, b) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let spec = CohortSpec::new(99, 3);
    let rows_a = write_cohort(&spec, a.path(), true, 1, false).expect("first run");
    let rows_b = write_cohort(&spec, b.path(), true, 2, false).expect("second run");
    assert_eq!(rows_a, rows_b);
    let (ha, hb) = (hash_tree(a.path()), hash_tree(b.path()));
    assert!(ha.len() > 3 * 50, "expected a few hundred files, got {}", ha.len());
    assert_eq!(ha, hb);
    let manifest = std::fs::read_to_string(a.path().join("manifest.csv")).expect("manifest");
    assert_eq!(manifest.lines().count(), 4);
    assert!(manifest.starts_with("index,patient_id,label,"));
}

#[test]
fn synth_command_writes_a_manifest_without_dicom_when_asked() {
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new(env!("CARGO_BIN_EXE_neurocds-lab"))
        .args(["synth", "--patients", "4", "--seed", "5", "--pcnsl-fraction", "0.5", "--no-dicom", "--quiet", "--out"])
        .arg(out.path())
        .output()
        .expect("neurocds runs");
    assert!(status.status.success(), "synth failed: {}", String::from_utf8_lossy(&status.stderr));
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).expect("manifest.json")).expect("JSON");
    assert_eq!(rows.len(), 4);
    let pcnsl = rows.iter().filter(|r| r["label"] == "pcnsl").count();
    assert_eq!(pcnsl, 2);
    let spec = CohortSpec::new(5, 4);
    for (i, row) in rows.iter().enumerate() {
        let case = generate_case(&spec, i);
        assert_eq!(row["patient_id"].as_str(), Some(case.patient_id.as_str()));
        assert_eq!(row["t1c_series_uid"].as_str(), Some(case.t1c.series_uid.as_str()));
        assert_eq!(row["study_dir"].as_str(), Some(""));
    }
    let mut entries: Vec<String> = std::fs::read_dir(out.path()).expect("out dir").filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries, ["labels.csv", "manifest.csv", "manifest.json"], "the manifests and the labels, no DICOM");
}
