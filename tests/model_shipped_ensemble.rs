//! The shipped ensemble (`models/ensemble/`) is what its manifest says, loads with plain
//! `tch::CModule::load`, and answers `[B, 2, D, H, W]` with finite two-class logits.

use std::path::PathBuf;

use neurocds::inference::Manifest;
use tch::{CModule, Device, Kind, Tensor};

fn ensemble_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/ensemble")
}

#[test]
fn every_member_matches_its_recorded_sha256_and_together_they_stay_under_20_mb() {
    let manifest = Manifest::load(&ensemble_dir().join("manifest.json")).unwrap();
    let files = manifest.verified_member_paths(&ensemble_dir()).unwrap();
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert!(bytes < 20 * 1024 * 1024, "members take {bytes} bytes");
    assert_eq!(manifest.classes, ["gbm", "pcnsl"]);
    assert_eq!(manifest.preprocessing_version, neurocds::imaging::preprocess::RECIPE_VERSION);
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
