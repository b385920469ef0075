//! `neurocds-lab evaluate --cohort DIR`: a folder of DICOM studies labelled by a CSV is read the way
//! the service reads a study from the PACS (series recognition, volume assembly, preprocessing)
//! and scored by the shipped ensemble; every labelled study is either scored or counted with a
//! reason, and a bad labels file is refused with the line and column at fault.
//!
//!     cargo test --release --locked --test evaluate_dicom_folder

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

const SEED: u64 = 4242;
const PATIENTS: usize = 12;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/ensemble/manifest.json")
}

fn neurocds(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neurocds-lab")).args(args).output().expect("run neurocds")
}

fn ok(args: &[&str]) -> Output {
    let out = neurocds(args);
    assert!(out.status.success(), "neurocds {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("valid JSON")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The one series folder of a patient whose name ends with `_<slug>`.
fn series_dir(cohort: &Path, patient: &str, slug: &str) -> PathBuf {
    std::fs::read_dir(cohort.join(patient))
        .expect("patient folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(&format!("_{slug}"))))
        .unwrap_or_else(|| panic!("{patient} has no {slug} series"))
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.values().map(|by_reason| by_reason.as_object().map_or(0, |r| r.values().filter_map(Value::as_u64).sum::<u64>() as usize)).sum())
}

#[test]
fn a_synthesised_dicom_folder_is_scored_like_the_same_cohort_in_memory_and_every_labelled_study_is_accounted_for() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cohort = tmp.path().join("cohort");
    ok(&["synth", "--out", s(&cohort), "--patients", &PATIENTS.to_string(), "--seed", &SEED.to_string(), "--quiet"]);
    let rows = read_json(&cohort.join("manifest.json"));
    let rows = rows.as_array().expect("manifest rows");
    assert_eq!(rows.len(), PATIENTS);
    let patient = |i: usize| rows[i]["patient_id"].as_str().expect("patient_id").to_string();

    // Three studies spoilt on purpose, one way each: a labelled study with no files, a study
    // without its T2, and a T1c with an unreadable slice in the middle.
    let mut labels = std::fs::read_to_string(cohort.join("labels.csv")).expect("synth writes labels.csv");
    assert!(labels.starts_with("study_uid,label,patient_id,age,sex,site,vendor,acquired\n"), "{labels}");
    labels.push_str("1.2.826.0.1.3680043.99.1,PCNSL,NOT-IN-FOLDER,70,F,internal,ge,2020-01-01\n");
    std::fs::write(cohort.join("labels.csv"), labels).expect("write labels");
    let (no_t2, broken_slice) = (patient(0), patient(1));
    std::fs::remove_dir_all(series_dir(&cohort, &no_t2, "t2")).expect("remove T2");
    let t1c = series_dir(&cohort, &broken_slice, "t1c");
    let mut slices: Vec<PathBuf> = std::fs::read_dir(&t1c).expect("T1c folder").filter_map(|e| e.ok().map(|e| e.path())).collect();
    slices.sort();
    let middle = &slices[slices.len() / 2];
    let mut bytes = std::fs::read(middle).expect("read slice");
    bytes.truncate(140); // keeps the preamble and "DICM", loses the header
    std::fs::write(middle, bytes).expect("truncate slice");

    let folder_out = tmp.path().join("folder-report");
    let stdout = ok(&["evaluate", "--model", s(&manifest()), "--cohort", s(&cohort), "--out", s(&folder_out), "--bootstrap", "200"]).stdout;
    let memory_out = tmp.path().join("memory-report");
    ok(&["evaluate", "--model", s(&manifest()), "--cohort", &format!("seed={SEED},patients={PATIENTS}"), "--out", s(&memory_out), "--bootstrap", "200"]);
    let folder = read_json(&folder_out.join("evaluation.json"));
    let memory = read_json(&memory_out.join("evaluation.json"));
    assert!(folder_out.join("report.md").is_file());

    // Every labelled study is scored or counted, with the reason for each spoilt one.
    let scored = folder["predictions"].as_array().expect("predictions");
    let abstained = count(&folder["preprocessing_abstentions"]);
    assert_eq!(scored.len() + abstained, PATIENTS + 1, "stdout: {}", String::from_utf8_lossy(&stdout));
    let reason_of = |id: &str| {
        folder["abstained_studies"].as_array().and_then(|a| a.iter().find(|x| x["patient_id"] == id)).map(|x| x["reason"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(reason_of("NOT-IN-FOLDER").as_deref(), Some("study_not_found"));
    assert_eq!(reason_of(&no_t2).as_deref(), Some("series_missing"));
    assert_eq!(reason_of(&broken_slice).as_deref(), Some("volume_assembly"));
    assert!(folder["cohort"].as_str().is_some_and(|c| c.contains("1 unreadable DICOM files skipped")), "{}", folder["cohort"]);

    let groups = folder["groups"].as_array().expect("groups");
    assert!(groups.iter().any(|g| g["name"] == "all_held_out"), "no all_held_out group: {groups:?}");
    // A folder without a validation split is compared with the member the model card's
    // validation split chose (all_held_out, which would hold validation cases, is not).
    let card_validation = &read_json(&manifest())["card"]["metrics"]["validation"]["member_aucs"];
    let aucs: Vec<f64> = card_validation.as_array().expect("the card records member AUCs on validation").iter().filter_map(|a| a.as_f64()).collect();
    let chosen = (0..aucs.len()).rev().max_by(|&a, &b| aucs[a].total_cmp(&aucs[b])).expect("members");
    for g in groups {
        let auc = g["auc_bootstrap"]["estimate"].as_f64().expect("AUC");
        assert!((0.0..=1.0).contains(&auc), "{}: AUC {auc}", g["name"]);
        assert!(g["subgroups"].as_array().is_some_and(|s| s.iter().any(|x| x["attribute"] == "vendor")), "no vendor subgroup in {}", g["name"]);
        if g["name"] != "all_held_out" {
            assert_eq!(g["validation_chosen_member"]["member"], chosen, "{}", g["name"]);
        }
    }

    // The untouched studies: the folder path sees the pixels the in-memory path prepared. The
    // synthetic renderer already quantises to the stored grey levels (RescaleSlope multiples)
    // and positions survive the DS text, so the two agree to float rounding.
    let by_id = |v: &Value| -> std::collections::BTreeMap<String, Value> {
        v["predictions"].as_array().into_iter().flatten().map(|p| (p["patient_id"].as_str().unwrap_or_default().to_string(), p.clone())).collect()
    };
    let (f, m) = (by_id(&folder), by_id(&memory));
    let untouched: Vec<&String> = m.keys().filter(|id| **id != no_t2 && **id != broken_slice).collect();
    assert!(untouched.len() >= PATIENTS - 4, "too few scored in memory: {:?}", memory["preprocessing_abstentions"]);
    let mut largest = 0f64;
    for id in untouched {
        let (a, b) = (&f[id], &m[id]);
        assert_eq!(a["split"], b["split"], "{id}");
        assert_eq!(a["pcnsl"], b["pcnsl"], "{id}");
        let diff = (a["calibrated"].as_f64().unwrap_or(f64::NAN) - b["calibrated"].as_f64().unwrap_or(f64::NAN)).abs();
        largest = largest.max(diff);
        assert!(diff <= 1e-4, "{id}: folder {} vs memory {}", a["calibrated"], b["calibrated"]);
        for (x, y) in a["members"].as_array().into_iter().flatten().zip(b["members"].as_array().into_iter().flatten()) {
            assert!((x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() <= 1e-4, "{id}: members {} vs {}", a["members"], b["members"]);
        }
    }
    eprintln!("largest folder-vs-memory difference in calibrated P(PCNSL): {largest:e}");
    // Studies preprocessing declined in memory are declined from the folder too.
    let spoilt_but_scored_in_memory = [&no_t2, &broken_slice].iter().filter(|id| m.contains_key(id.as_str())).count();
    assert_eq!(f.len() + spoilt_but_scored_in_memory, m.len(), "scored: folder {:?}, memory {:?}", f.keys().collect::<Vec<_>>(), m.keys().collect::<Vec<_>>());
}

fn evaluate_with_labels(csv: &str) -> String {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("labels.csv"), csv).expect("write labels");
    let out = neurocds(&["evaluate", "--model", s(&manifest()), "--cohort", s(tmp.path()), "--out", s(&tmp.path().join("out"))]);
    assert!(!out.status.success(), "a bad labels file was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("labels.csv"), "error does not name the file: {stderr}");
    stderr
}

#[test]
fn an_unknown_label_is_refused_naming_the_line_and_the_column() {
    let stderr = evaluate_with_labels("study_uid,label,age\n1.2.3,gbm,60\n1.2.4,metastasis,55\n");
    assert!(stderr.contains("line 3") && stderr.contains("column `label`") && stderr.contains("metastasis"), "{stderr}");
}

#[test]
fn a_labels_file_without_the_label_column_is_refused_naming_the_column() {
    let stderr = evaluate_with_labels("study_uid,diagnosis\n1.2.3,gbm\n");
    assert!(stderr.contains("missing required column `label`"), "{stderr}");
}

#[test]
fn a_bad_optional_value_is_refused_naming_the_line_and_the_column() {
    let stderr = evaluate_with_labels("study_uid,label,age\n1.2.3,gbm,sixty\n");
    assert!(stderr.contains("line 2") && stderr.contains("column `age`"), "{stderr}");
}
