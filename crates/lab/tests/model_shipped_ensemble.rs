//! The shipped ensemble (`models/ensemble/`) is what its manifest says, loads with plain
//! `tch::CModule::load`, and answers `[B, 2, D, H, W]` with finite two-class logits.

use std::path::PathBuf;

use neurocds_analysis::inference::Manifest;
use tch::{CModule, Device, Kind, Tensor};

fn ensemble_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/ensemble")
}

#[test]
fn every_member_matches_its_recorded_sha256_and_together_they_stay_under_20_mb() {
    let manifest = Manifest::load(&ensemble_dir().join("manifest.json")).unwrap();
    let files = manifest.verified_member_paths(&ensemble_dir()).unwrap();
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert!(bytes < 20 * 1024 * 1024, "members take {bytes} bytes");
    assert_eq!(manifest.classes, ["gbm", "pcnsl"]);
    assert_eq!(manifest.preprocessing_version, neurocds_analysis::imaging::preprocess::RECIPE_VERSION);
}

#[test]
fn member_0_loads_with_plain_cmodule_load_and_gives_finite_probabilities_for_a_batch() {
    let manifest = Manifest::load(&ensemble_dir().join("manifest.json")).unwrap();
    let module = CModule::load(ensemble_dir().join("member-0.pt")).unwrap();
    let [d, h, w] = manifest.input.shape.map(|x| x as i64);
    tch::manual_seed(0);
    let input = Tensor::randn([3, 2, d, h, w], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| module.forward_ts(&[input])).unwrap();
    assert_eq!(logits.size(), [3, 2]);
    let p = Vec::<f32>::try_from(&logits.softmax(-1, Kind::Float).select(1, 1)).unwrap();
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{p:?}");
}

/// The service's path on one synthetic study: generate, `prepare`, the engine's forward pass.
/// Prints the timings (`cargo test --release --test model_shipped_ensemble -- --nocapture`).
#[test]
fn a_synthetic_study_is_prepared_and_scored_by_the_shipped_engine_deterministically() {
    use neurocds_analysis::{imaging::preprocess::prepare, inference::{Engine, ModelInput}};
    use neurocds_lab::cohort;
    use std::time::Instant;

    let manifest_path = ensemble_dir().join("manifest.json");
    let manifest = Manifest::load(&manifest_path).unwrap();
    let case = cohort::generate_case(&cohort::CohortSpec::new(4242, 10), 3);
    let t = Instant::now();
    let prepared = prepare(&case.t1c, &case.t2, &manifest.input.recipe()).unwrap();
    let prepare_s = t.elapsed().as_secs_f64();
    let engine = Engine::start(&manifest_path, Device::Cpu, 4, 2, None).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let input = ModelInput { data: prepared.data, lesion_volume_ml: prepared.lesion_volume_ml, t1c_lesion_mean: prepared.t1c_lesion_mean };
    // The first real pass also pays TorchScript's profiling run; the second is the steady state.
    let t = Instant::now();
    let first = runtime.block_on(engine.predict(input.clone())).unwrap();
    let first_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = runtime.block_on(engine.predict(input)).unwrap();
    let predict_s = t.elapsed().as_secs_f64();
    println!(
        "dims {:?}: prepare {prepare_s:.3} s, ensemble forward {first_s:.3} s (first) / {predict_s:.3} s (then), P(PCNSL) {:.3} (truth {:?})",
        case.t1c.data.dim(),
        out.calibrated_probability,
        case.label
    );
    assert_eq!(first, out, "the same input must give the same answer");
    assert!(out.calibrated_probability.is_finite() && out.member_probabilities.len() == manifest.members.len());
}

/// The shipped validation report is what today's generator, preprocessing and members produce:
/// the first held-out cases of the training cohort are regenerated and scored again. A change
/// to the generator or the recipe that would silently invalidate the report (and the model
/// card's reproduce command) fails here; retrain, or bump the recipe version.
#[test]
fn the_shipped_validation_report_is_reproduced_by_todays_generator_preprocessing_and_members() {
    use neurocds_analysis::imaging::preprocess::prepare;
    use neurocds_lab::{cohort, evaluate};

    let manifest = Manifest::load(&ensemble_dir().join("manifest.json")).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(ensemble_dir().join("validation/evaluation.json")).unwrap()).unwrap();
    assert_eq!(report["ensemble_sha256"], manifest.ensemble_hash().as_str(), "the report is about these members");
    let predictions: Vec<evaluate::Prediction> = serde_json::from_value(report["predictions"].clone()).unwrap();
    let cohort_ref = &manifest.card["training"]["cohort"];
    let (seed, patients) = (cohort_ref["seed"].as_u64().unwrap(), cohort_ref["patients"].as_u64().unwrap() as usize);
    let mut spec = cohort::CohortSpec::new(seed, patients);
    let anatomies: Vec<&str> = cohort_ref["anatomies"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_else(|| vec!["phantom"]);
    spec.anatomies = cohort::template::parse_anatomies(&anatomies.join(",")).expect("the card's anatomies (templates from scripts/bootstrap.sh)");
    let members = evaluate::load_members(&manifest, &ensemble_dir()).unwrap();
    let mut compared = 0;
    for index in 0..patients {
        let case = cohort::generate_case(&spec, index);
        let Some(reported) = predictions.iter().find(|p| p.patient_id == case.patient_id) else { continue };
        let prepared = prepare(&case.t1c, &case.t2, &manifest.input.recipe()).unwrap();
        let now = evaluate::member_probabilities(&members, &[&prepared.data], manifest.input.shape).unwrap();
        for (m, (then, now)) in reported.members.iter().zip(now.iter().map(|this_member| this_member[0])).enumerate() {
            assert!((then - now).abs() < 1e-4, "{} member {m}: reported {then:.6}, scored now {now:.6}", case.patient_id);
        }
        compared += 1;
        if compared == 4 {
            break;
        }
    }
    assert_eq!(compared, 4, "four held-out cases were found and compared");
}
