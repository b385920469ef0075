//! `neurocds-lab train`: trains the shipped ensemble on a synthetic cohort, calibrates it, picks its
//! operating thresholds, exports TorchScript members and writes the manifest (the model card),
//! `MODEL_CARD.md` and the validation report.
//!
//! Design (after Moassefi et al. 2026): T1c + T2 lesion crops from the service's own
//! preprocessing; members that differ in seed and data order (and, with `--bagging`, in the
//! development cases they see: each its own class-stratified bootstrap resample), trained with
//! cross-entropy; the
//! three-stage temporal split plus an external-site test set ([`super::dataset`]). Platt
//! calibration, thresholds, the member-spread bound and the out-of-distribution bounds are all
//! fixed on the development and validation stages; the test stages are looked at once, at the end.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use indicatif::ProgressBar;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::json;
use tch::{CModule, Device, Kind, Tensor, nn, nn::ModuleT, nn::OptimizerConfig};

use neurocds_analysis::imaging::preprocess::{RECIPE_VERSION, Recipe};
use neurocds_analysis::inference::manifest::{Calibration, InputSpec, Manifest, Member, OodBounds, Thresholds, sha256_file};

use crate::{
    cohort::CohortSpec,
    dataset::{self, Case, Split, SplitPlan},
    evaluate::{self, EvaluateError, EvaluationReport, ReportSettings, TrainingCohortRef},
    metrics, net,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("libtorch failed while {step}: {source}")]
    Torch { step: String, source: tch::TchError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("training data: {0}")]
    Data(String),
    #[error(transparent)]
    Evaluate(#[from] EvaluateError),
}

fn torch(step: impl Into<String>) -> impl FnOnce(tch::TchError) -> TrainError {
    let step = step.into();
    move |source| TrainError::Torch { step, source }
}

/// Command-line arguments of `neurocds-lab train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Directory to write the ensemble into (members, manifest.json, MODEL_CARD.md, validation/).
    #[arg(long, default_value = "models/ensemble")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub members: usize,
    /// Patients in the synthetic cohort (all splits together; about 45 % are external).
    #[arg(long, default_value_t = 1400)]
    pub patients: usize,
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Where the training brains come from, comma-separated (`phantom`, `colin27`); `mni152`
    /// is the external-anatomy test set and is refused here.
    #[arg(long, default_value = "phantom")]
    pub anatomy: String,
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// Edge of the cubic crop in voxels (a multiple of 8).
    #[arg(long, default_value_t = 32)]
    pub crop: usize,
    #[arg(long, default_value_t = 2.0)]
    pub spacing_mm: f64,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Train each member on its own class-stratified bootstrap resample of the development
    /// split (bagging) instead of on all of it.
    #[arg(long)]
    pub bagging: bool,
    /// Give the members different network widths and dropout (`net::VARIED`, in turn) instead
    /// of one architecture for all.
    #[arg(long)]
    pub varied_architectures: bool,
}

impl TrainArgs {
    /// Runs the command and prints where the ensemble went and how it did.
    pub fn run(self) -> Result<(), TrainError> {
        let opts = TrainOptions {
            out: self.out,
            members: self.members,
            patients: self.patients,
            seed: self.seed,
            anatomy: self.anatomy,
            epochs: self.epochs,
            recipe: Recipe { shape: [self.crop; 3], spacing_mm: self.spacing_mm },
            threads: self.threads,
            bagging: self.bagging,
            varied_architectures: self.varied_architectures,
            command_line: evaluate::command_line(),
        };
        let report = run(&opts)?;
        println!("ensemble written to {}", opts.out.display());
        for g in &report.groups {
            println!(
                "{:>13}: {} patients, AUC {:.3} (95 % CI {:.3}-{:.3}), calibration slope {:.2}",
                g.name, g.patients, g.auc_bootstrap.estimate, g.auc_bootstrap.lower, g.auc_bootstrap.upper, g.calibration.slope
            );
        }
        Ok(())
    }
}

/// Options of `neurocds-lab train`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub out: PathBuf,
    pub members: usize,
    pub patients: usize,
    pub seed: u64,
    /// Comma-separated anatomies (see `TrainArgs::anatomy`).
    pub anatomy: String,
    pub epochs: usize,
    pub recipe: Recipe,
    /// Intra-op threads for libtorch (the reference machine has 2 cores).
    pub threads: usize,
    /// Each member on its own bootstrap resample of the development split.
    pub bagging: bool,
    /// Members take their architectures from `net::VARIED` in turn (else all `net::DEFAULT`).
    pub varied_architectures: bool,
    /// The command line, recorded in the model card so the ensemble can be reproduced.
    pub command_line: String,
}

/// Hyper-parameters of one member.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MemberPlan {
    pub seed: u64,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Trained on a class-stratified bootstrap resample of the development split (drawn from
    /// `seed`) rather than on all of it.
    pub bootstrap: bool,
    pub architecture: net::Architecture,
}

/// The command: generate, train, export, calibrate, validate, write.
pub fn run(opts: &TrainOptions) -> Result<EvaluationReport, TrainError> {
    let started = Instant::now();
    tch::set_num_threads(opts.threads.max(1) as i32);
    tch::set_num_interop_threads(1);
    std::fs::create_dir_all(&opts.out).map_err(|source| TrainError::Write { path: opts.out.clone(), source })?;
    let mut spec = CohortSpec::new(opts.seed, opts.patients);
    spec.anatomies = crate::cohort::template::parse_anatomies(&opts.anatomy).map_err(|e| TrainError::Data(e.to_string()))?;
    if spec.anatomies.iter().any(|a| a.name() == crate::cohort::TemplateName::Mni152.as_str()) {
        return Err(TrainError::Data("mni152 is the external-anatomy test set: it is never trained on".into()));
    }
    let anatomies: Vec<String> = spec.anatomies.iter().map(|a| a.name().to_string()).collect();
    let cases = dataset::generate(&spec, &opts.recipe, "preparing");
    let prep_seconds = started.elapsed().as_secs_f64();
    let plan = SplitPlan::from_cases(&cases).ok_or_else(|| TrainError::Data("too few internal cases to split".into()))?;
    let in_split = |s: Split| cases.iter().filter(move |c| plan.split(c) == s);
    let external = in_split(Split::External).count();
    if external < 300 {
        tracing::warn!(external, "fewer than 300 external patients: the external AUC interval will be wide");
    }
    let development: Vec<(&[f32], bool)> = in_split(Split::Development).filter_map(|c| c.input.as_ref().ok().map(|i| (i.data.as_slice(), c.pcnsl))).collect();
    if development.iter().all(|(_, y)| *y) || development.iter().all(|(_, y)| !*y) {
        return Err(TrainError::Data("the development split needs both diagnoses".into()));
    }

    // Members, one after another (each uses every thread libtorch is given).
    let mut members = Vec::new();
    let mut plans = Vec::new();
    let train_started = Instant::now();
    for m in 0..opts.members {
        let plan = MemberPlan {
            seed: opts.seed.wrapping_mul(1000).wrapping_add(m as u64 + 1), epochs: opts.epochs, batch: 16, learning_rate: 2e-3, weight_decay: 1e-4, bootstrap: opts.bagging,
            architecture: if opts.varied_architectures { net::VARIED[m % net::VARIED.len()] } else { net::DEFAULT },
        };
        let bar = dataset::progress(plan.epochs as u64, &format!("member {m}"));
        let (mut vs, network) = train_member(&development, opts.recipe.shape, &plan, &bar)?;
        bar.finish();
        let file = format!("member-{m}.pt");
        let path = opts.out.join(&file);
        export_member(&mut vs, &network, opts.recipe.shape, &path)?;
        let sha256 = sha256_file(&path).map_err(|source| TrainError::Write { path: path.clone(), source })?;
        members.push(Member { file, sha256 });
        plans.push(plan);
    }
    let train_seconds = train_started.elapsed().as_secs_f64();

    // Calibration, thresholds and spread bound: validation split only.
    let mut manifest = draft_manifest(opts, members);
    let modules = evaluate::load_members(&manifest, &opts.out)?;
    let validation: Vec<&Case> = in_split(Split::Validation).filter(|c| c.input.is_ok()).collect();
    let val_inputs: Vec<&[f32]> = validation.iter().filter_map(|c| c.input.as_ref().ok().map(|i| i.data.as_slice())).collect();
    let val_labels: Vec<bool> = validation.iter().map(|c| c.pcnsl).collect();
    let per_member = evaluate::member_probabilities(&modules, &val_inputs, opts.recipe.shape)?;
    let n_members = per_member.len() as f64;
    let val_mean: Vec<f64> = (0..val_inputs.len()).map(|i| per_member.iter().map(|m| m[i]).sum::<f64>() / n_members).collect();
    let val_spread: Vec<f64> = (0..val_inputs.len())
        .map(|i| {
            let (lo, hi) = per_member.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), m| (lo.min(m[i]), hi.max(m[i])));
            hi - lo
        })
        .collect();
    let (a, b) = metrics::platt(&val_mean, &val_labels);
    manifest.calibration = Calibration::Platt { a, b };
    let val_calibrated: Vec<f64> = val_mean.iter().map(|&p| manifest.calibration.apply(p)).collect();
    manifest.thresholds = choose_thresholds(&val_calibrated, &val_labels);
    manifest.max_member_spread = quantile(&val_spread, 0.99).clamp(0.25, 0.6);
    manifest.ood = Some(ood_bounds(in_split(Split::Development)));

    // The cohort reference lets `evaluate` rebuild the same split.
    let counts: serde_json::Map<String, serde_json::Value> = Split::ALL
        .iter()
        .map(|&s| {
            let all: Vec<&Case> = in_split(s).collect();
            let prepared = all.iter().filter(|c| c.input.is_ok()).count();
            let pcnsl = all.iter().filter(|c| c.pcnsl && c.input.is_ok()).count();
            (s.as_str().to_string(), json!({ "patients": all.len(), "prepared": prepared, "pcnsl": pcnsl }))
        })
        .collect();
    let cohort_ref = TrainingCohortRef { seed: opts.seed, patients: opts.patients, split_plan: plan, anatomies };
    manifest.card = json!({
        "training": {
            "cohort": cohort_ref,
            "generator": "neurocds_lab::cohort (the procedural phantom and real brain templates inside its head; see crates/lab/src/cohort/ASSUMPTIONS.md)",
            "splits": counts,
            "split_rule": "internal cases by acquisition date: earliest 70 % development, next 15 % validation, latest 15 % prospective; all outside-institution cases external",
            "members": plans,
            "architecture": if opts.varied_architectures {
                "3-D CNN, conv3d widths and dropout per member (see members), group norm, ReLU, max-pool, global average pool, dropout, linear → 2 logits".to_string()
            } else {
                format!("3-D CNN, conv3d widths {:?}, group norm, ReLU, max-pool, global average pool, dropout {}, linear → 2 logits", net::DEFAULT.widths, net::DEFAULT.dropout)
            },
            "loss": "cross-entropy", "optimiser": "AdamW, cosine learning-rate decay",
            "augmentation": "left-right flip, ±2-voxel shifts, per-channel intensity scale ±10 % and offset ±0.1",
            "seconds": { "preprocessing": prep_seconds, "training": train_seconds },
            "threads": opts.threads,
        },
        "intended_use": "Decision support for adults with a new enhancing brain mass on MRI: estimates P(primary CNS lymphoma) versus glioblastoma from T1 post-contrast and T2, to help choose between stereotactic biopsy (and withholding steroids) and resection planning. It advises; it never orders.",
        "limits": [
            "Trained and validated on synthetic phantoms only: no real patient data. Not for clinical use until validated on local, histology-confirmed cases.",
            "Two classes only: metastasis, abscess, tumefactive demyelination and other mimics are out of scope and will still receive a GBM/PCNSL probability.",
            "Immunocompromised (necrotic) lymphoma and solidly enhancing GBM are the expected failure modes.",
            "One lesion is scored (the one with the most enhancement); multifocal disease is summarised by that lesion.",
        ],
        "command": opts.command_line,
        "preprocessing": format!("{RECIPE_VERSION}: see crates/analysis/src/imaging/preprocess.rs"),
    });

    // The held-out stages, once.
    let modules = evaluate::load_members(&manifest, &opts.out)?;
    let mut report = evaluate::evaluate_cases(
        &manifest,
        &modules,
        &cases,
        Some(plan),
        &ReportSettings::default(),
        format!("synthetic seed={} patients={} anatomy={} (held-out splits of the training cohort)", opts.seed, opts.patients, opts.anatomy.replace(',', "+")),
    )?;
    let summary: serde_json::Map<String, serde_json::Value> = report
        .groups
        .iter()
        .map(|g| {
            (
                g.name.clone(),
                json!({ "patients": g.patients, "auc": g.auc_bootstrap, "auc_delong": g.auc_delong, "calibration_slope": g.calibration.slope,
                        "calibration_intercept": g.calibration.intercept, "brier": g.calibration.brier,
                        "best_member_auc": g.member_aucs.get(g.best_member).map(|m| m.estimate),
                        "member_aucs": g.member_aucs.iter().map(|m| m.estimate).collect::<Vec<_>>() }),
            )
        })
        .collect();
    if let Some(card) = manifest.card.as_object_mut() {
        card.insert("metrics".into(), serde_json::Value::Object(summary));
        card.insert("total_seconds".into(), json!(started.elapsed().as_secs_f64()));
    }
    report.command = Some(opts.command_line.clone());
    let validation_dir = opts.out.join("validation");
    evaluate::write_report(&report, &validation_dir)?;
    let path = opts.out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| TrainError::Write { path: path.clone(), source: e.into() })?;
    std::fs::write(&path, text).map_err(|source| TrainError::Write { path: path.clone(), source })?;
    let card_path = opts.out.join("MODEL_CARD.md");
    std::fs::write(&card_path, model_card(&manifest, &report)).map_err(|source| TrainError::Write { path: card_path, source })?;
    Ok(report)
}

fn draft_manifest(opts: &TrainOptions, members: Vec<Member>) -> Manifest {
    Manifest {
        name: "neurocds-gbm-pcnsl".into(),
        version: "1.0.0".into(),
        classes: vec!["gbm".into(), "pcnsl".into()],
        input: InputSpec {
            channels: vec!["t1c".into(), "t2".into()],
            shape: opts.recipe.shape,
            spacing_mm: opts.recipe.spacing_mm,
            normalisation: "per channel (x - median) / (IQR / 1.349) inside the brain (head mask eroded by 14 mm), clipped to [-5, 15]".into(),
        },
        preprocessing_version: RECIPE_VERSION.into(),
        members,
        calibration: Calibration::None,
        thresholds: Thresholds { lymphoma_likely: 0.6, gbm_likely: 0.4 },
        max_member_spread: 0.5,
        ood: None,
        card: serde_json::Value::Null,
    }
}

/// Trains one member from scratch.
pub fn train_member(samples: &[(&[f32], bool)], shape: [usize; 3], plan: &MemberPlan, bar: &ProgressBar) -> Result<(nn::VarStore, nn::SequentialT), TrainError> {
    tch::manual_seed(plan.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let network = net::classifier(&vs.root(), &plan.architecture);
    let mut opt = nn::AdamW { wd: plan.weight_decay, ..Default::default() }.build(&vs, plan.learning_rate).map_err(torch("building the optimiser"))?;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut order = member_cases(samples, plan.bootstrap, &mut rng);
    for epoch in 0..plan.epochs {
        order.shuffle(&mut rng);
        // Cosine decay to zero over the run.
        let lr = plan.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / plan.epochs as f64).cos());
        opt.set_lr(lr);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(plan.batch) {
            let (xs, ys) = augmented_batch(samples, chunk, shape, &mut rng);
            let loss = network.forward_t(&xs, true).cross_entropy_for_logits(&ys);
            opt.backward_step(&loss);
            loss_sum += loss.double_value(&[]) * chunk.len() as f64;
        }
        bar.set_message(format!("loss {:.3}", loss_sum / order.len().max(1) as f64));
        bar.inc(1);
    }
    Ok((vs, network))
}

/// The development cases (indexes into `samples`) one member trains on: all of them, or with
/// `bootstrap` as many drawn with replacement, separately per diagnosis so that every member
/// keeps the split's class balance.
fn member_cases(samples: &[(&[f32], bool)], bootstrap: bool, rng: &mut StdRng) -> Vec<usize> {
    if !bootstrap {
        return (0..samples.len()).collect();
    }
    let mut cases = Vec::with_capacity(samples.len());
    for class in [false, true] {
        let pool: Vec<usize> = (0..samples.len()).filter(|&i| samples[i].1 == class).collect();
        cases.extend((0..pool.len()).map(|_| pool[rng.random_range(0..pool.len())]));
    }
    cases
}

/// A batch `[B, 2, D, H, W]` with random left-right flips, shifts of up to two voxels (edges
/// repeated) and per-channel intensity jitter; labels `[B]` (1 = PCNSL).
fn augmented_batch(samples: &[(&[f32], bool)], idx: &[usize], shape: [usize; 3], rng: &mut StdRng) -> (Tensor, Tensor) {
    let [d, h, w] = shape;
    let n = d * h * w;
    let mut xs = vec![0f32; idx.len() * 2 * n];
    let mut ys = Vec::with_capacity(idx.len());
    for (b, &i) in idx.iter().enumerate() {
        let (x, y) = samples[i];
        ys.push(i64::from(y));
        let flip = rng.random_bool(0.5);
        let shift: [isize; 3] = std::array::from_fn(|_| rng.random_range(-2i64..=2) as isize);
        for c in 0..2 {
            let scale = rng.random_range(0.9f32..1.1);
            let offset = rng.random_range(-0.1f32..0.1);
            let src = &x[c * n..(c + 1) * n];
            let dst = &mut xs[(b * 2 + c) * n..(b * 2 + c + 1) * n];
            let at = |v: usize, s: isize, len: usize| (v as isize - s).clamp(0, len as isize - 1) as usize;
            for z in 0..d {
                let sz = at(z, shift[0], d);
                for yy in 0..h {
                    let sy = at(yy, shift[1], h);
                    for xx in 0..w {
                        let sx = at(if flip { w - 1 - xx } else { xx }, shift[2], w);
                        dst[(z * h + yy) * w + xx] = src[(sz * h + sy) * w + sx] * scale + offset;
                    }
                }
            }
        }
    }
    let xs = Tensor::from_slice(&xs).view([idx.len() as i64, 2, d as i64, h as i64, w as i64]);
    (xs, Tensor::from_slice(&ys))
}

/// Freezes the member and traces it into TorchScript at `path`. Frozen, because tracing refuses
/// parameters that require grad ("Cannot insert a Tensor that requires grad as a constant").
pub fn export_member(vs: &mut nn::VarStore, network: &nn::SequentialT, shape: [usize; 3], path: &Path) -> Result<(), TrainError> {
    vs.freeze();
    let [d, h, w] = shape.map(|x| x as i64);
    let example = Tensor::zeros([1, 2, d, h, w], (Kind::Float, Device::Cpu));
    let module = tch::no_grad(|| CModule::create_by_tracing("NeurocdsMember", "forward", &[example], &mut |xs| vec![net::logits(network, &xs[0])]))
        .map_err(torch(format!("tracing {}", path.display())))?;
    module.save(path).map_err(torch(format!("saving {}", path.display())))
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN)
}

/// "Lymphoma likely" at ≥ 95 % specificity for GBM (a biopsy-first plan for a GBM delays its
/// resection); "GBM likely" only where ≥ 95 % of lymphomas score higher (resecting a lymphoma
/// is the harm to avoid). Neither may cross 0.5 (the middle belongs to the tumour board).
pub fn choose_thresholds(calibrated: &[f64], pcnsl: &[bool]) -> Thresholds {
    let gbm: Vec<f64> = calibrated.iter().zip(pcnsl).filter(|(_, l)| !**l).map(|(p, _)| *p).collect();
    let lym: Vec<f64> = calibrated.iter().zip(pcnsl).filter(|(_, l)| **l).map(|(p, _)| *p).collect();
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let lymphoma_likely = round((quantile(&gbm, 0.95) + 1e-3).clamp(0.5, 0.95));
    let mut gbm_likely = round((quantile(&lym, 0.05) - 1e-3).clamp(0.05, 0.5));
    if gbm_likely >= lymphoma_likely {
        gbm_likely = lymphoma_likely - 0.01;
    }
    Thresholds { lymphoma_likely, gbm_likely }
}

/// Lesion statistics seen in development, widened: volume by a factor of 1.5 either way,
/// enhancement by one robust-z unit.
fn ood_bounds<'a>(development: impl Iterator<Item = &'a Case>) -> OodBounds {
    let (mut vol, mut enh) = (Vec::new(), Vec::new());
    for c in development {
        if let Ok(i) = &c.input {
            vol.push(i.lesion_volume_ml);
            enh.push(i.t1c_lesion_mean);
        }
    }
    OodBounds {
        lesion_volume_ml: [quantile(&vol, 0.005) / 1.5, quantile(&vol, 0.995) * 1.5],
        t1c_lesion_mean: [quantile(&enh, 0.005) - 1.0, quantile(&enh, 0.995) + 1.0],
    }
}

/// `MODEL_CARD.md`: the manifest's card, for people.
fn model_card(m: &Manifest, r: &EvaluationReport) -> String {
    use std::fmt::Write as _;
    let card = &m.card;
    let s = |p: &str| card.pointer(p).map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string())).unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "# Model card: {} {}\n", m.name, m.version);
    let _ = writeln!(md, "**Reproduce:** `{}` (then `neurocds-lab evaluate --model models/ensemble/manifest.json --cohort seed=S,patients=N --out DIR` re-checks it).\n", s("/command"));
    let _ = writeln!(md, "## Intended use\n\n{}\n", s("/intended_use"));
    let _ = writeln!(md, "## Inputs and preprocessing\n\n- Channels: {:?}; crop {:?} voxels at {} mm isotropic, centred on the enhancing lesion, patient-axis aligned (LPS).", m.input.channels, m.input.shape, m.input.spacing_mm);
    let _ = writeln!(md, "- Normalisation: {}.", m.input.normalisation);
    let _ = writeln!(md, "- Recipe `{}` (`crates/analysis/src/imaging/preprocess.rs`).\n", m.preprocessing_version);
    let _ = writeln!(md, "## Training data\n\n- Generator: {}.", s("/training/generator"));
    let _ = writeln!(md, "- Split rule: {}.", s("/training/split_rule"));
    let _ = writeln!(md, "- Counts: `{}`.", s("/training/splits"));
    let _ = writeln!(md, "- Architecture: {}; loss {}; {}; augmentation: {}.", s("/training/architecture"), s("/training/loss"), s("/training/optimiser"), s("/training/augmentation"));
    let members = card.pointer("/training/members").and_then(|m| m.as_array()).cloned().unwrap_or_default();
    let mut differences = vec!["seed", "data order"];
    if members.iter().any(|p| p.get("bootstrap").and_then(|b| b.as_bool()) == Some(true)) {
        differences.push("training cases (each its own class-stratified bootstrap resample of the development split)");
    }
    if members.windows(2).any(|w| w[0].get("architecture") != w[1].get("architecture")) {
        differences.push("network width and dropout");
    }
    let _ = writeln!(md, "- Members differ in {}; their plans are under `card.training.members` in manifest.json.", differences.join(", "));
    let _ = writeln!(md, "- Wall time (seconds): `{}`, threads {}.\n", s("/training/seconds"), s("/training/threads"));
    let _ = writeln!(md, "## Members\n\n| file | SHA-256 |\n|---|---|");
    for mem in &m.members {
        let _ = writeln!(md, "| {} | `{}` |", mem.file, mem.sha256);
    }
    let _ = writeln!(md, "\nEnsemble hash: `{}`.\n", m.ensemble_hash());
    let _ = writeln!(md, "## Output and operating points\n\n- Mean member P(PCNSL), Platt-calibrated on the validation split: `{}`.", serde_json::to_string(&m.calibration).unwrap_or_default());
    let _ = writeln!(
        md,
        "- Lymphoma likely (biopsy, hold steroids if safe) at P ≥ {:.3}; GBM likely (resection planning) at P < {:.3}; between: tumour board.",
        m.thresholds.lymphoma_likely, m.thresholds.gbm_likely
    );
    let _ = writeln!(md, "- Abstains when members disagree by more than {:.2} or the lesion lies outside the training ranges `{}`.\n", m.max_member_spread, serde_json::to_string(&m.ood).unwrap_or_default());
    let _ = writeln!(md, "## Performance (held-out splits; full report in `validation/report.md`)\n\n| group | patients | AUC (bootstrap 95 % CI) | calibration slope | Brier |\n|---|---|---|---|---|");
    for g in &r.groups {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} ({:.3}–{:.3}) | {:.2} | {:.3} |",
            g.name, g.patients, g.auc_bootstrap.estimate, g.auc_bootstrap.lower, g.auc_bootstrap.upper, g.calibration.slope, g.calibration.brier
        );
    }
    let held_out = r.predictions.len();
    let _ = writeln!(
        md,
        "\n## Monitoring after deployment\n\nThe service compares what it sees with this card (README, \"Model monitoring\"; `/monitoring`): the calibrated probabilities, members' spread and advice of recent analyses against the {held_out} held-out studies of `validation/evaluation.json`, and the inputs (lesion volume and intensity, with the share outside the training range; scanner vendor and field strength; T1c 2D/3D; how each series was recognised) and outcomes against the preceding weeks, since the evaluation records outputs only. A population stability index above the site's alert threshold (0.25 by default) is an alert, and `/readyz` says \"degraded\". A site should re-evaluate on its own cases whenever one persists."
    );
    let _ = writeln!(md, "\n## Limits\n");
    if let Some(limits) = card.pointer("/limits").and_then(|l| l.as_array()) {
        for l in limits {
            let _ = writeln!(md, "- {}", l.as_str().unwrap_or_default());
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(labels: &[bool]) -> Vec<(&'static [f32], bool)> {
        labels.iter().map(|&y| (&[][..], y)).collect()
    }

    #[test]
    fn without_bagging_a_member_sees_every_development_case_once() {
        let s = samples(&[true, false, false, true]);
        assert_eq!(member_cases(&s, false, &mut StdRng::seed_from_u64(1)), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_bootstrap_resample_keeps_each_diagnosis_count_and_differs_by_seed() {
        let labels: Vec<bool> = (0..60).map(|i| i % 3 == 0).collect();
        let s = samples(&labels);
        let a = member_cases(&s, true, &mut StdRng::seed_from_u64(7));
        let b = member_cases(&s, true, &mut StdRng::seed_from_u64(8));
        for draw in [&a, &b] {
            assert_eq!(draw.len(), 60);
            assert_eq!(draw.iter().filter(|&&i| labels[i]).count(), 20, "PCNSL cases stay 20 of 60");
            let distinct: std::collections::HashSet<_> = draw.iter().collect();
            assert!(distinct.len() < 60, "drawn with replacement");
        }
        assert_ne!(a, b);
        assert_eq!(a, member_cases(&s, true, &mut StdRng::seed_from_u64(7)), "deterministic per seed");
    }
}
