//! `neurocds-lab evaluate`: runs a shipped ensemble on a labelled cohort and reports it the way
//! TRIPOD+AI asks: discrimination with bootstrap and DeLong intervals, ensemble vs best member,
//! operating points, calibration, subgroups, and the effect of ensemble size.
//!
//! The members are the TorchScript files the service loads (hash-checked through the manifest);
//! inputs come from the service's own preprocessing; calibration and abstention follow
//! [`super::engine::summarise`]. Output: `evaluation.json`, `report.md` and PNG plots in `--out`.
//!
//! Two kinds of cohort: a synthetic one regenerated in memory (`--cohort seed=S,patients=N`),
//! and a folder of DICOM studies with a labels CSV (`--cohort DIR`, see [`super::labels`] and
//! [`super::cohort_folder`]), read the way the service reads a study from the PACS.

pub mod cohort_folder;
pub mod labels;
pub mod plot;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    str::FromStr,
};

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};
use tch::{CModule, Device, Kind, Tensor};

use neurocds_analysis::inference::{
    engine::{out_of_distribution, summarise},
    manifest::{Manifest, ManifestError},
};

use self::{
    cohort_folder::FolderCohortError,
    plot::Canvas,
};
use crate::{
    dataset::{self, Case, CaseInput, Split, SplitPlan},
    metrics::{self, Calibration, Interval, OperatingPoint, PairedTest},
};
use crate::cohort::CohortSpec;

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot load model member {file}: {source}")]
    Load { file: PathBuf, source: tch::TchError },
    #[error("forward pass of member {member} failed: {source}")]
    Forward { member: usize, source: tch::TchError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot draw {what}: {source}")]
    Plot { what: String, source: png::EncodingError },
    #[error("cohort {0:?}: expected `seed=S,patients=N` or a folder of DICOM studies")]
    CohortSpec(String),
    #[error(transparent)]
    Folder(#[from] FolderCohortError),
    #[error("no case of the cohort could be evaluated ({0})")]
    Empty(String),
}

/// Which cohort to evaluate on: a synthetic cohort named by its seed and size (regenerated
/// deterministically), or a folder of DICOM studies labelled by a CSV.
#[derive(Debug, Clone, PartialEq)]
pub enum CohortSource {
    /// `anatomy`: where the brains come from, `+`-separated (`phantom`, `colin27`, `mni152`).
    Synthetic { seed: u64, patients: usize, anatomy: String },
    /// `labels`: the labels CSV; `None` means `dir/labels.csv`.
    Folder { dir: PathBuf, labels: Option<PathBuf> },
}

impl FromStr for CohortSource {
    type Err = EvaluateError;

    /// Parses `seed=42,patients=1500` (optionally `,anatomy=mni152` or `anatomy=phantom+colin27`;
    /// the phantom by default), or takes an existing directory as a DICOM folder.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EvaluateError::CohortSpec(s.to_string());
        if Path::new(s).is_dir() {
            return Ok(CohortSource::Folder { dir: PathBuf::from(s), labels: None });
        }
        let (mut seed, mut patients, mut anatomy) = (None, None, "phantom".to_string());
        for part in s.split(',') {
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            match key.trim() {
                "seed" => seed = Some(value.trim().parse().map_err(|_| bad())?),
                "patients" => patients = Some(value.trim().parse().map_err(|_| bad())?),
                "anatomy" => anatomy = value.trim().replace('+', ","),
                _ => return Err(bad()),
            }
        }
        Ok(CohortSource::Synthetic { seed: seed.ok_or_else(bad)?, patients: patients.ok_or_else(bad)?, anatomy })
    }
}

/// Knobs of the report.
#[derive(Debug, Clone, Copy)]
pub struct ReportSettings {
    /// Prevalence of PCNSL at which PPV and NPV are also reported.
    pub prevalence: f64,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// The member the training's validation split chose (from the model card), for cohorts
    /// without a validation split of their own.
    pub validation_chosen_member: Option<usize>,
}

impl Default for ReportSettings {
    fn default() -> Self {
        // PCNSL is a small minority of enhancing masses in the GBM-vs-PCNSL differential.
        ReportSettings { prevalence: 0.10, bootstrap_resamples: 2000, seed: 7, validation_chosen_member: None }
    }
}

/// One labelled study as the report sees it: the truth, where it sits in the design, the
/// subgroup attributes it has, and its model input or the reason there is none.
#[derive(Debug, Clone)]
pub struct LabelledStudy<'a> {
    pub patient_id: String,
    pub split: Split,
    pub pcnsl: bool,
    /// `(attribute, value)` for the subgroup table; attributes a study lacks are left out.
    pub attributes: Vec<(&'static str, String)>,
    /// Generator ground truth, synthetic cohorts only: the imaging was drawn from the other
    /// diagnosis (see `Case::mimic`). `None` for a hospital's studies.
    pub mimic: Option<bool>,
    /// The prepared input, or why there is none: a stable key (counted in
    /// `preprocessing_abstentions`) and a detail naming the series or file.
    pub input: Result<Cow<'a, CaseInput>, (String, String)>,
}

impl<'a> LabelledStudy<'a> {
    /// A synthetic case, with the attributes the generator knows.
    pub fn from_case(c: &'a Case, split: Split) -> LabelledStudy<'a> {
        LabelledStudy {
            patient_id: c.patient_id.clone(),
            split,
            pcnsl: c.pcnsl,
            attributes: vec![
                ("age_band", age_band(c.age).to_string()),
                ("sex", c.sex.clone()),
                ("site", if c.external { "external".into() } else { "internal".into() }),
                ("vendor", c.vendor.clone()),
                ("field_strength", format!("{:.1}T", c.field_strength_t)),
            ],
            mimic: Some(c.mimic),
            input: match &c.input {
                Ok(i) => Ok(Cow::Borrowed(i)),
                Err(kind) => {
                    let key = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                    Err((key.clone(), key))
                }
            },
        }
    }
}

/// A study that could not be scored, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbstainedStudy {
    pub patient_id: String,
    pub split: Split,
    pub reason: String,
    pub detail: String,
}

/// One case's ensemble output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prediction {
    pub patient_id: String,
    pub split: Split,
    pub pcnsl: bool,
    pub members: Vec<f64>,
    pub mean: f64,
    pub calibrated: f64,
    pub spread: f64,
    /// The engine's reason for abstaining (out of distribution, members disagree), if any.
    pub abstain_reason: Option<String>,
    /// Generator ground truth (synthetic cohorts only): the case mimics the other diagnosis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mimic: Option<bool>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub model: String,
    pub version: String,
    pub ensemble_sha256: String,
    pub cohort: String,
    /// The command that produced this report, to reproduce it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub prevalence: f64,
    pub bootstrap_resamples: usize,
    /// Cases preprocessing declined, by split and reason (for a DICOM folder also studies whose
    /// files are missing or unreadable, or whose T1c/T2 could not be found or assembled).
    pub preprocessing_abstentions: BTreeMap<String, BTreeMap<String, usize>>,
    /// Each of those cases, with the detail (series, file) that explains it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abstained_studies: Vec<AbstainedStudy>,
    /// Labelled studies in the development split (used for training), not scored.
    #[serde(default)]
    pub development_skipped: usize,
    pub groups: Vec<GroupReport>,
    pub predictions: Vec<Prediction>,
}

/// Metrics on one set of patients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    pub patients: usize,
    pub pcnsl: usize,
    /// Of these, how many the engine would abstain on (out of distribution, disagreement).
    /// They are included in every metric below, so the numbers are not flattered by abstention.
    pub engine_abstentions: usize,
    pub auc_bootstrap: Interval,
    pub auc_delong: Interval,
    pub member_aucs: Vec<Interval>,
    /// The member with the highest AUC on these same patients. Chosen after seeing their
    /// labels, so it is an optimistic bar: among members of equal skill it is simply the one
    /// whose noise fell luckiest on this sample.
    pub best_member: usize,
    /// Ensemble (a) against the best single member (b), paired DeLong.
    pub ensemble_vs_best_member: PairedTest,
    /// Ensemble against the member with the highest AUC on the validation split: the member a
    /// single-model deployment would have shipped, judged on patients that did not choose it.
    /// Absent when the cohort has no validation split, and for groups that contain it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_chosen_member: Option<ChosenMember>,
    /// The same comparisons on the cases a model can tell apart: synthetic cohorts only, with
    /// the generator's mimics (imaging drawn from the other diagnosis) left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_mimics: Option<WithoutMimics>,
    /// "Lymphoma likely": calibrated P(PCNSL) ≥ `thresholds.lymphoma_likely`.
    pub lymphoma_likely: OperatingPoint,
    /// PCNSL-positive meaning "not GBM likely": P ≥ `thresholds.gbm_likely`. Its sensitivity
    /// is the share of lymphomas that escape a "GBM likely" (resection) recommendation.
    pub not_gbm_likely: OperatingPoint,
    /// Recommendation × histology counts: `[lymphoma_likely, tumour_board, gbm_likely]` each
    /// as `[pcnsl, gbm]`.
    pub recommendations: [[usize; 2]; 3],
    pub calibration: Calibration,
    pub subgroups: Vec<Subgroup>,
    pub ensemble_size: Vec<EnsembleSizeRow>,
}

/// A member picked by a rule, and the ensemble against it (paired DeLong, ensemble = a).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChosenMember {
    pub member: usize,
    pub member_auc: f64,
    pub ensemble_vs_member: PairedTest,
}

/// Ensemble and members on a group's non-mimic cases (synthetic cohorts only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithoutMimics {
    pub patients: usize,
    pub pcnsl: usize,
    /// Mimic cases left out.
    pub mimics: usize,
    pub auc: Interval,
    pub member_aucs: Vec<f64>,
    /// Best member on these patients, and the ensemble against it.
    pub best_member: ChosenMember,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subgroup {
    pub attribute: String,
    pub value: String,
    pub patients: usize,
    pub pcnsl: usize,
    /// DeLong interval; absent where the subgroup lacks a class.
    pub auc: Option<Interval>,
}

/// AUC and prediction stability over random subsets of `k` members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleSizeRow {
    pub k: usize,
    pub subsets: usize,
    pub auc_mean: f64,
    pub auc_sd: f64,
    /// Mean over patients of the standard deviation of the k-member mean probability across
    /// subsets: how much a patient's answer depends on which members happen to be used.
    pub prediction_sd: f64,
}

/// Command-line arguments of `neurocds-lab evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// The ensemble's manifest.
    #[arg(long, default_value = "models/ensemble/manifest.json")]
    pub model: PathBuf,
    /// The cohort: `seed=S,patients=N` (a synthetic cohort, regenerated), or a folder DIR of
    /// DICOM studies (any layout, searched recursively) labelled by `DIR/labels.csv` or
    /// `--labels`. Labels CSV: a header row, then one row per study; required columns
    /// `study_uid,label` (label gbm|glioblastoma|pcnsl|lymphoma, any case); optional
    /// `patient_id,age,sex,site,vendor,acquired` (subgroups; acquired = YYYY-MM-DD) and `split`
    /// (development|validation|prospective|external). Without `split`, site `internal` is
    /// reported as prospective and every other study as external.
    #[arg(long, verbatim_doc_comment)]
    pub cohort: String,
    /// Labels CSV of a folder cohort (default: `labels.csv` inside the folder).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Series recognition rules for a folder cohort (default: the shipped config/series-rules.toml).
    #[arg(long)]
    pub series_rules: Option<PathBuf>,
    /// Directory for evaluation.json, report.md and the plots.
    #[arg(long)]
    pub out: PathBuf,
    /// PCNSL prevalence at which PPV and NPV are also reported.
    #[arg(long, default_value_t = 0.10)]
    pub prevalence: f64,
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

impl EvaluateArgs {
    pub fn run(self) -> Result<(), EvaluateError> {
        let cohort = match (self.cohort.parse()?, self.labels) {
            (CohortSource::Folder { dir, .. }, labels) => CohortSource::Folder { dir, labels },
            (CohortSource::Synthetic { .. }, Some(_)) => return Err(EvaluateError::CohortSpec(format!("{} (--labels needs a folder cohort)", self.cohort))),
            (synthetic, None) => synthetic,
        };
        let opts = EvaluateOptions {
            manifest: self.model,
            cohort,
            series_rules: self.series_rules,
            out: self.out,
            settings: ReportSettings { prevalence: self.prevalence, bootstrap_resamples: self.bootstrap, ..Default::default() },
            threads: self.threads,
            command: Some(command_line()),
        };
        let report = run(&opts)?;
        let abstained: usize = report.preprocessing_abstentions.values().flat_map(|m| m.values()).sum();
        println!("{}: {} scored, {} not scored {}", report.cohort, report.predictions.len(), abstained, serde_json::to_string(&report.preprocessing_abstentions).unwrap_or_default());
        for g in &report.groups {
            println!(
                "{:>13}: {} patients, AUC {:.3} (95 % CI {:.3}-{:.3}), calibration slope {:.2}",
                g.name, g.patients, g.auc_bootstrap.estimate, g.auc_bootstrap.lower, g.auc_bootstrap.upper, g.calibration.slope
            );
        }
        println!("report written to {}", opts.out.join("report.md").display());
        Ok(())
    }
}

/// Options of `neurocds-lab evaluate`.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    pub manifest: PathBuf,
    pub cohort: CohortSource,
    /// Series recognition rules for a folder cohort; `None`: the shipped rules.
    pub series_rules: Option<PathBuf>,
    pub out: PathBuf,
    pub settings: ReportSettings,
    pub threads: usize,
    /// Recorded in the report as the way to reproduce it.
    pub command: Option<String>,
}

/// `neurocds` and this process's arguments, quoted where a shell would need it.
pub fn command_line() -> String {
    let quote = |a: String| if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>()*?".contains(c)) { format!("'{}'", a.replace('\'', "'\\''")) } else { a };
    std::iter::once("neurocds".to_string()).chain(std::env::args().skip(1).map(quote)).collect::<Vec<_>>().join(" ")
}

/// The command: load, generate, predict, report, write.
pub fn run(opts: &EvaluateOptions) -> Result<EvaluationReport, EvaluateError> {
    tch::set_num_threads(opts.threads.max(1) as i32);
    let manifest = Manifest::load(&opts.manifest)?;
    let dir = opts.manifest.parent().unwrap_or(Path::new("."));
    let members = load_members(&manifest, dir)?;
    let card_validation_aucs = manifest.card.pointer("/metrics/validation/member_aucs").and_then(|v| serde_json::from_value::<Vec<f64>>(v.clone()).ok());
    let settings = &ReportSettings { validation_chosen_member: card_validation_aucs.and_then(|a| best_of(&a)), ..opts.settings };
    let (seed, patients, anatomy) = match &opts.cohort {
        CohortSource::Synthetic { seed, patients, anatomy } => (*seed, *patients, anatomy.clone()),
        CohortSource::Folder { dir, labels } => {
            let labels = labels.clone().unwrap_or_else(|| dir.join("labels.csv"));
            let cohort = cohort_folder::prepare(dir, &labels, opts.series_rules.as_deref(), &manifest.input.recipe())?;
            let mut report = evaluate_studies(&manifest, &members, &cohort.studies, settings, cohort.description)?;
            report.command = opts.command.clone();
            write_report(&report, &opts.out)?;
            return Ok(report);
        }
    };
    let mut spec = CohortSpec::new(seed, patients);
    spec.anatomies = crate::cohort::template::parse_anatomies(&anatomy).map_err(|e| EvaluateError::CohortSpec(e.to_string()))?;
    let anatomy_names: Vec<&str> = spec.anatomies.iter().map(|a| a.name()).collect();
    let cases = dataset::generate(&spec, &manifest.input.recipe(), "preparing");
    // The training split is reused when this is the training cohort; any other cohort is unseen
    // as a whole and is reported by internal/external origin.
    let trained_on = manifest.card.pointer("/training/cohort").and_then(|c| serde_json::from_value::<TrainingCohortRef>(c.clone()).ok());
    let plan = trained_on.filter(|t| t.seed == seed && t.patients == patients && t.anatomies == anatomy_names).map(|t| t.split_plan);
    let anatomy = anatomy_names.join("+");
    let description = match plan {
        Some(_) => format!("synthetic seed={seed} patients={patients} anatomy={anatomy} (the training cohort; held-out splits only)"),
        None => format!(
            "synthetic seed={seed} patients={patients} anatomy={anatomy} (unseen: none of it was used in training or calibration; internal cases are reported as prospective, outside-institution cases as external)"
        ),
    };
    let mut report = evaluate_cases(&manifest, &members, &cases, plan, settings, description)?;
    report.command = opts.command.clone();
    write_report(&report, &opts.out)?;
    Ok(report)
}

/// What `train` records about its cohort in the manifest card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingCohortRef {
    pub seed: u64,
    pub patients: usize,
    pub split_plan: SplitPlan,
    /// Where the brains came from (cards before templates existed: the phantom only).
    #[serde(default = "phantom_only")]
    pub anatomies: Vec<String>,
}

fn phantom_only() -> Vec<String> {
    vec!["phantom".to_string()]
}

/// Loads every member (hash-checked) on the CPU in evaluation mode.
pub fn load_members(manifest: &Manifest, dir: &Path) -> Result<Vec<CModule>, EvaluateError> {
    manifest
        .verified_member_paths(dir)?
        .into_iter()
        .map(|file| {
            let mut m = CModule::load_on_device(&file, Device::Cpu).map_err(|source| EvaluateError::Load { file, source })?;
            m.set_eval();
            Ok(m)
        })
        .collect()
}

/// P(PCNSL) of every member on every input: `[member][case]`. Batches of 32, no gradients.
pub fn member_probabilities(members: &[CModule], inputs: &[&[f32]], shape: [usize; 3]) -> Result<Vec<Vec<f64>>, EvaluateError> {
    let _guard = tch::no_grad_guard();
    let [d, h, w] = shape.map(|x| x as i64);
    let mut out = vec![Vec::with_capacity(inputs.len()); members.len()];
    for chunk in inputs.chunks(32) {
        let flat: Vec<f32> = chunk.iter().flat_map(|x| x.iter().copied()).collect();
        let batch = Tensor::from_slice(&flat).view([chunk.len() as i64, 2, d, h, w]);
        for (mi, m) in members.iter().enumerate() {
            let forward = |source| EvaluateError::Forward { member: mi, source };
            let logits = m.forward_ts(&[&batch]).map_err(forward)?;
            let p = logits.f_softmax(-1, Kind::Float).and_then(|p| p.f_select(1, 1)).map_err(forward)?;
            let p = Vec::<f32>::try_from(&p).map_err(forward)?;
            out[mi].extend(p.into_iter().map(f64::from));
        }
    }
    Ok(out)
}

/// Runs the ensemble on every prepared case and reports the held-out groups.
pub fn evaluate_cases(
    manifest: &Manifest,
    members: &[CModule],
    cases: &[Case],
    plan: Option<SplitPlan>,
    settings: &ReportSettings,
    cohort: String,
) -> Result<EvaluationReport, EvaluateError> {
    let split_of = |c: &Case| match plan {
        Some(p) => p.split(c),
        None if c.external => Split::External,
        None => Split::Prospective,
    };
    let studies: Vec<LabelledStudy> = cases.iter().map(|c| LabelledStudy::from_case(c, split_of(c))).collect();
    evaluate_studies(manifest, members, &studies, settings, cohort)
}

/// Runs the ensemble on every prepared study outside the development split and reports the
/// held-out groups.
pub fn evaluate_studies(manifest: &Manifest, members: &[CModule], studies: &[LabelledStudy], settings: &ReportSettings, cohort: String) -> Result<EvaluationReport, EvaluateError> {
    let mut preprocessing_abstentions: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut abstained_studies = Vec::new();
    let mut development_skipped = 0;
    let mut ready: Vec<(&LabelledStudy, &CaseInput)> = Vec::new();
    for st in studies {
        if st.split == Split::Development {
            development_skipped += 1;
            continue;
        }
        match &st.input {
            Ok(input) => ready.push((st, input.as_ref())),
            Err((reason, detail)) => {
                *preprocessing_abstentions.entry(st.split.as_str().into()).or_default().entry(reason.clone()).or_default() += 1;
                abstained_studies.push(AbstainedStudy { patient_id: st.patient_id.clone(), split: st.split, reason: reason.clone(), detail: detail.clone() });
            }
        }
    }
    if ready.is_empty() {
        return Err(EvaluateError::Empty(format!("every held-out case was declined: {}", serde_json::to_string(&preprocessing_abstentions).unwrap_or_default())));
    }
    let inputs: Vec<&[f32]> = ready.iter().map(|(_, i)| i.data.as_slice()).collect();
    let per_member = member_probabilities(members, &inputs, manifest.input.shape)?;
    let predictions: Vec<Prediction> = ready
        .iter()
        .enumerate()
        .map(|(n, (st, input))| {
            let probs: Vec<f64> = per_member.iter().map(|m| m[n]).collect();
            let engine_input = neurocds_analysis::inference::ModelInput { data: Vec::new(), lesion_volume_ml: input.lesion_volume_ml, t1c_lesion_mean: input.t1c_lesion_mean };
            let out = summarise(probs, manifest, manifest.max_member_spread, out_of_distribution(manifest, &engine_input));
            Prediction {
                patient_id: st.patient_id.clone(),
                split: st.split,
                pcnsl: st.pcnsl,
                members: out.member_probabilities,
                mean: out.mean_probability,
                calibrated: out.calibrated_probability,
                spread: out.spread,
                abstain_reason: out.abstain_reason,
                mimic: st.mimic,
            }
        })
        .collect();
    let validation_chosen = validation_chosen_member(&predictions).or(settings.validation_chosen_member);
    let mut groups = Vec::new();
    for (name, wanted) in [
        ("external", &[Split::External][..]),
        ("prospective", &[Split::Prospective][..]),
        ("validation", &[Split::Validation][..]),
        ("all_held_out", &[Split::Validation, Split::Prospective, Split::External][..]),
    ] {
        let (subset, group_studies): (Vec<&Prediction>, Vec<&LabelledStudy>) =
            predictions.iter().zip(&ready).filter(|(p, _)| wanted.contains(&p.split)).map(|(p, (st, _))| (p, *st)).unzip();
        let pcnsl = subset.iter().filter(|p| p.pcnsl).count();
        if pcnsl == 0 || pcnsl == subset.len() {
            continue;
        }
        let chosen = validation_chosen.filter(|_| !wanted.contains(&Split::Validation));
        groups.push(group_report(name, &subset, &group_studies, manifest, settings, chosen));
    }
    Ok(EvaluationReport {
        model: manifest.name.clone(),
        version: manifest.version.clone(),
        ensemble_sha256: manifest.ensemble_hash(),
        cohort,
        command: None,
        prevalence: settings.prevalence,
        bootstrap_resamples: settings.bootstrap_resamples,
        preprocessing_abstentions,
        abstained_studies,
        development_skipped,
        groups,
        predictions,
    })
}

/// The member with the highest AUC on the validation split, if the cohort has one with both
/// classes.
fn validation_chosen_member(predictions: &[Prediction]) -> Option<usize> {
    let validation: Vec<&Prediction> = predictions.iter().filter(|p| p.split == Split::Validation).collect();
    let labels: Vec<bool> = validation.iter().map(|p| p.pcnsl).collect();
    if !labels.contains(&true) || !labels.contains(&false) {
        return None;
    }
    let aucs = member_columns(&validation).iter().map(|s| metrics::auc(s, &labels)).collect::<Vec<_>>();
    best_of(&aucs)
}

/// Each member's probabilities as one column over `preds`.
fn member_columns(preds: &[&Prediction]) -> Vec<Vec<f64>> {
    let n_members = preds.first().map_or(0, |p| p.members.len());
    (0..n_members).map(|m| preds.iter().map(|p| p.members[m]).collect()).collect()
}

/// Index of the highest AUC (the first of equals).
fn best_of(aucs: &[f64]) -> Option<usize> {
    (0..aucs.len()).rev().max_by(|&a, &b| aucs[a].total_cmp(&aucs[b]))
}

/// The ensemble (`ensemble` scores) against member `member`.
fn against_member(ensemble: &[f64], member_scores: &[Vec<f64>], member_aucs: &[f64], member: usize, labels: &[bool]) -> Option<ChosenMember> {
    let scores = member_scores.get(member)?;
    Some(ChosenMember { member, member_auc: member_aucs[member], ensemble_vs_member: metrics::delong_paired(ensemble, scores, labels) })
}

/// Ensemble against its best member on the group's non-mimic cases; `None` unless every case
/// carries the generator's mimic flag and both classes remain.
fn without_mimics(preds: &[&Prediction]) -> Option<WithoutMimics> {
    let flags: Option<Vec<bool>> = preds.iter().map(|p| p.mimic).collect();
    let flags = flags?;
    let kept: Vec<&Prediction> = preds.iter().zip(&flags).filter(|(_, m)| !**m).map(|(p, _)| *p).collect();
    let labels: Vec<bool> = kept.iter().map(|p| p.pcnsl).collect();
    let pcnsl = labels.iter().filter(|l| **l).count();
    if pcnsl == 0 || pcnsl == labels.len() {
        return None;
    }
    let ensemble: Vec<f64> = kept.iter().map(|p| p.calibrated).collect();
    let member_scores = member_columns(&kept);
    let member_aucs: Vec<f64> = member_scores.iter().map(|s| metrics::auc(s, &labels)).collect();
    let best = against_member(&ensemble, &member_scores, &member_aucs, best_of(&member_aucs)?, &labels)?;
    Some(WithoutMimics {
        patients: kept.len(),
        pcnsl,
        mimics: preds.len() - kept.len(),
        auc: metrics::delong_interval(&ensemble, &labels),
        member_aucs,
        best_member: best,
    })
}

fn group_report(name: &str, preds: &[&Prediction], studies: &[&LabelledStudy], manifest: &Manifest, settings: &ReportSettings, validation_chosen: Option<usize>) -> GroupReport {
    let labels: Vec<bool> = preds.iter().map(|p| p.pcnsl).collect();
    let calibrated: Vec<f64> = preds.iter().map(|p| p.calibrated).collect();
    let member_scores = member_columns(preds);
    let member_aucs: Vec<Interval> = member_scores.iter().map(|s| metrics::delong_interval(s, &labels)).collect();
    let estimates: Vec<f64> = member_aucs.iter().map(|a| a.estimate).collect();
    let best_member = best_of(&estimates).unwrap_or(0);
    let ensemble_vs_best_member = match member_scores.get(best_member) {
        Some(best) => metrics::delong_paired(&calibrated, best, &labels),
        None => metrics::delong_paired(&calibrated, &calibrated, &labels),
    };
    let validation_chosen_member = validation_chosen.and_then(|m| against_member(&calibrated, &member_scores, &estimates, m, &labels));
    let t = manifest.thresholds;
    let mut recommendations = [[0usize; 2]; 3];
    for p in preds {
        let row = if p.calibrated >= t.lymphoma_likely {
            0
        } else if p.calibrated < t.gbm_likely {
            2
        } else {
            1
        };
        recommendations[row][if p.pcnsl { 0 } else { 1 }] += 1;
    }
    GroupReport {
        name: name.to_string(),
        patients: preds.len(),
        pcnsl: labels.iter().filter(|l| **l).count(),
        engine_abstentions: preds.iter().filter(|p| p.abstain_reason.is_some()).count(),
        auc_bootstrap: metrics::bootstrap_auc(&calibrated, &labels, settings.bootstrap_resamples, settings.seed),
        auc_delong: metrics::delong_interval(&calibrated, &labels),
        member_aucs,
        best_member,
        ensemble_vs_best_member,
        validation_chosen_member,
        without_mimics: without_mimics(preds),
        lymphoma_likely: metrics::operating_point(&calibrated, &labels, t.lymphoma_likely, settings.prevalence),
        not_gbm_likely: metrics::operating_point(&calibrated, &labels, t.gbm_likely, settings.prevalence),
        recommendations,
        calibration: metrics::calibration(&calibrated, &labels, 10),
        subgroups: subgroups(preds, studies),
        ensemble_size: ensemble_size(&member_scores, &labels, settings.seed),
    }
}

pub(crate) fn age_band(age: u32) -> &'static str {
    match age {
        0..50 => "<50",
        50..65 => "50-64",
        65..75 => "65-74",
        _ => ">=75",
    }
}

/// AUC per value of every attribute the studies carry (in the order they first appear); a study
/// without an attribute is left out of that attribute's rows.
fn subgroups(preds: &[&Prediction], studies: &[&LabelledStudy]) -> Vec<Subgroup> {
    let mut attributes: Vec<&'static str> = Vec::new();
    for st in studies {
        for (a, _) in &st.attributes {
            if !attributes.contains(a) {
                attributes.push(a);
            }
        }
    }
    let mut out = Vec::new();
    for attribute in attributes {
        let mut by_value: BTreeMap<&str, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for (p, st) in preds.iter().zip(studies) {
            if let Some((_, value)) = st.attributes.iter().find(|(a, _)| *a == attribute) {
                let e = by_value.entry(value.as_str()).or_default();
                e.0.push(p.calibrated);
                e.1.push(p.pcnsl);
            }
        }
        for (value, (scores, labels)) in by_value {
            let pcnsl = labels.iter().filter(|l| **l).count();
            let auc = (pcnsl > 0 && pcnsl < labels.len()).then(|| metrics::delong_interval(&scores, &labels));
            out.push(Subgroup { attribute: attribute.into(), value: value.into(), patients: labels.len(), pcnsl, auc });
        }
    }
    out
}

/// Up to this many random member subsets per ensemble size.
const SUBSETS_PER_SIZE: usize = 30;

fn ensemble_size(member_scores: &[Vec<f64>], labels: &[bool], seed: u64) -> Vec<EnsembleSizeRow> {
    let n = member_scores.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for k in 1..=n {
        let mut subsets: Vec<Vec<usize>> = Vec::new();
        for _ in 0..SUBSETS_PER_SIZE * 4 {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rng);
            let mut s = idx[..k].to_vec();
            s.sort_unstable();
            if !subsets.contains(&s) {
                subsets.push(s);
            }
            if subsets.len() == SUBSETS_PER_SIZE {
                break;
            }
        }
        let means: Vec<Vec<f64>> = subsets
            .iter()
            .map(|s| (0..labels.len()).map(|i| s.iter().map(|&m| member_scores[m][i]).sum::<f64>() / k as f64).collect())
            .collect();
        let aucs: Vec<f64> = means.iter().map(|m| metrics::auc(m, labels)).collect();
        let (auc_mean, auc_sd) = mean_sd(&aucs);
        let prediction_sd = (0..labels.len()).map(|i| mean_sd(&means.iter().map(|m| m[i]).collect::<Vec<_>>()).1).sum::<f64>() / labels.len().max(1) as f64;
        rows.push(EnsembleSizeRow { k, subsets: subsets.len(), auc_mean, auc_sd, prediction_sd });
    }
    rows
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = if x.len() > 1 { x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// Writes `evaluation.json`, `report.md` and per-group `roc-*.png`, `calibration-*.png`.
pub fn write_report(report: &EvaluationReport, dir: &Path) -> Result<(), EvaluateError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| EvaluateError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| EvaluateError::Write { path: dir.into(), source })?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| EvaluateError::Write { path: dir.join("evaluation.json"), source: e.into() })?;
    write("evaluation.json", &json)?;
    for g in &report.groups {
        let preds: Vec<&Prediction> = report.predictions.iter().filter(|p| group_contains(&g.name, p.split)).collect();
        let labels: Vec<bool> = preds.iter().map(|p| p.pcnsl).collect();
        let mut roc = Canvas::unit_square(480);
        roc.line((0.0, 0.0), (1.0, 1.0), plot::GREY, 2);
        for m in 0..preds.first().map_or(0, |p| p.members.len()) {
            let s: Vec<f64> = preds.iter().map(|p| p.members[m]).collect();
            roc.polyline(&metrics::roc_curve(&s, &labels), plot::LIGHT, 2);
        }
        let s: Vec<f64> = preds.iter().map(|p| p.calibrated).collect();
        roc.polyline(&metrics::roc_curve(&s, &labels), plot::BLUE, 3);
        let png = roc.png().map_err(|source| EvaluateError::Plot { what: format!("roc-{}", g.name), source })?;
        write(&format!("roc-{}.png", g.name), &png)?;

        let mut cal = Canvas::unit_square(480);
        cal.line((0.0, 0.0), (1.0, 1.0), plot::GREY, 2);
        let points: Vec<(f64, f64)> = g.calibration.bins.iter().filter(|b| b.count > 0).map(|b| (b.mean_predicted, b.observed)).collect();
        cal.polyline(&points, plot::ORANGE, 3);
        for p in &points {
            cal.marker(*p, plot::ORANGE, 9);
        }
        let png = cal.png().map_err(|source| EvaluateError::Plot { what: format!("calibration-{}", g.name), source })?;
        write(&format!("calibration-{}.png", g.name), &png)?;
    }
    write("report.md", markdown(report).as_bytes())
}

/// "Ensemble against its members": the after-the-fact best member, the member chosen on
/// validation, and (synthetic cohorts) both again without the generator's mimics.
fn members_section(md: &mut String, r: &EvaluationReport) {
    let vs = |c: &ChosenMember| format!("{:.4} (member {}) | {:+.4} ({})", c.member_auc, c.member, c.ensemble_vs_member.difference, p_value(c.ensemble_vs_member.p_value));
    let _ = writeln!(md, "\n## Ensemble against its members\n");
    let _ = writeln!(
        md,
        "Three bars. *Best on these patients* is the member with the highest AUC on the very patients being scored, chosen after seeing their labels: \
         an optimistic bar, since among members of equal skill it is the one whose noise fell luckiest. *Chosen on validation* is the member with the \
         highest validation AUC, the one a single-model deployment would have shipped, judged on patients that played no part in choosing it \
         (the cohort's own validation split, else the training validation recorded in the model card; n/a for groups containing that split). *Without mimics* (synthetic cohorts only) repeats the first \
         comparison without the cases whose imaging the generator drew from the other diagnosis: those no model can tell apart, so every model \
         ranks them by chance and they add the same noise to every AUC.\n"
    );
    let _ = writeln!(md, "| group | ensemble AUC | best on these patients | ensemble − it (p) | chosen on validation | ensemble − it (p) | without mimics: patients (mimics left out) | ensemble AUC | best member | ensemble − it (p) |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for g in &r.groups {
        let best = ChosenMember {
            member: g.best_member,
            member_auc: g.member_aucs.get(g.best_member).map_or(f64::NAN, |m| m.estimate),
            ensemble_vs_member: g.ensemble_vs_best_member,
        };
        let chosen = g.validation_chosen_member.as_ref().map_or("n/a | n/a".to_string(), vs);
        let clean = g.without_mimics.as_ref().map_or("n/a | n/a | n/a | n/a".to_string(), |w| {
            format!("{} ({}) | {:.4} | {}", w.patients, w.mimics, w.auc.estimate, vs(&w.best_member))
        });
        let _ = writeln!(md, "| {} | {:.4} | {} | {} | {} |", g.name, g.auc_delong.estimate, vs(&best), chosen, clean);
    }
}

fn group_contains(group: &str, split: Split) -> bool {
    match group {
        "all_held_out" => split != Split::Development,
        other => other == split.as_str(),
    }
}

fn ci(i: &Interval) -> String {
    format!("{:.3} ({:.3}–{:.3})", i.estimate, i.lower, i.upper)
}

/// `p = 0.123`, or `p < 0.001`.
fn p_value(p: f64) -> String {
    if p < 0.001 { "p < 0.001".into() } else { format!("p = {p:.3}") }
}

fn pct(x: f64) -> String {
    if x.is_nan() { "n/a".into() } else { format!("{:.1} %", 100.0 * x) }
}

/// Longest list of unscored studies in report.md (evaluation.json has all of them).
const MAX_LISTED_ABSTENTIONS: usize = 50;

/// The human-readable report.
pub fn markdown(r: &EvaluationReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Validation report: {} {}\n", r.model, r.version);
    let _ = writeln!(md, "- Ensemble SHA-256 (over member hashes): `{}`", r.ensemble_sha256);
    let _ = writeln!(md, "- Cohort: {}", r.cohort);
    if let Some(command) = &r.command {
        let _ = writeln!(md, "- Reproduce: `{command}`");
    }
    let _ = writeln!(md, "- AUC intervals: stratified bootstrap ({} patient resamples, percentile) and DeLong (fast mid-rank form)", r.bootstrap_resamples);
    let _ = writeln!(md, "- PPV/NPV are also given at an assumed PCNSL prevalence of {:.0} %", 100.0 * r.prevalence);
    let _ = writeln!(md, "- Probabilities are the calibrated ensemble P(PCNSL); engine abstentions (out of distribution, member disagreement) are counted but kept in every metric.\n");
    if r.development_skipped > 0 {
        let _ = writeln!(md, "Studies in the development split (not scored): {}\n", r.development_skipped);
    }
    if !r.preprocessing_abstentions.is_empty() {
        let _ = writeln!(md, "Cases preprocessing declined (not scored): {}\n", serde_json::to_string(&r.preprocessing_abstentions).unwrap_or_default());
        let _ = writeln!(md, "| patient | split | reason | detail |\n|---|---|---|---|");
        for a in r.abstained_studies.iter().take(MAX_LISTED_ABSTENTIONS) {
            let _ = writeln!(md, "| {} | {} | {} | {} |", a.patient_id, a.split.as_str(), a.reason, a.detail.replace('|', "\\|"));
        }
        if r.abstained_studies.len() > MAX_LISTED_ABSTENTIONS {
            let _ = writeln!(md, "\n({} more in evaluation.json)", r.abstained_studies.len() - MAX_LISTED_ABSTENTIONS);
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Summary\n\n| group | patients (PCNSL) | AUC, bootstrap 95 % CI | AUC, DeLong 95 % CI | best member AUC | ensemble − best member (p) | calibration slope | intercept | Brier |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for g in &r.groups {
        let _ = writeln!(
            md,
            "| {} | {} ({}) | {} | {} | {:.3} (member {}) | {:+.3} (p = {:.3}) | {:.2} | {:+.2} | {:.3} |",
            g.name,
            g.patients,
            g.pcnsl,
            ci(&g.auc_bootstrap),
            ci(&g.auc_delong),
            g.member_aucs.get(g.best_member).map_or(f64::NAN, |m| m.estimate),
            g.best_member,
            g.ensemble_vs_best_member.difference,
            g.ensemble_vs_best_member.p_value,
            g.calibration.slope,
            g.calibration.intercept,
            g.calibration.brier
        );
    }
    members_section(&mut md, r);
    for g in &r.groups {
        let _ = writeln!(md, "\n## {} ({} patients, {} PCNSL; engine would abstain on {})\n", g.name, g.patients, g.pcnsl, g.engine_abstentions);
        let _ = writeln!(md, "![ROC]({}) ![calibration]({})\n", format_args!("roc-{}.png", g.name), format_args!("calibration-{}.png", g.name));
        let _ = writeln!(md, "ROC: x = 1 − specificity, y = sensitivity (blue: ensemble; light: members). Calibration: x = predicted, y = observed, deciles of predicted probability; grey = ideal.\n");
        let _ = writeln!(md, "| operating point | threshold | sensitivity | specificity | PPV | NPV | PPV @ {:.0} % | NPV @ {:.0} % |", 100.0 * r.prevalence, 100.0 * r.prevalence);
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for (label, op) in [("lymphoma likely (P ≥ t)", &g.lymphoma_likely), ("not GBM likely (P ≥ t)", &g.not_gbm_likely)] {
            let _ = writeln!(
                md,
                "| {label} | {:.3} | {} | {} | {} | {} | {} | {} |",
                op.threshold,
                pct(op.sensitivity),
                pct(op.specificity),
                pct(op.ppv),
                pct(op.npv),
                pct(op.ppv_at_prevalence),
                pct(op.npv_at_prevalence)
            );
        }
        let rec = &g.recommendations;
        let _ = writeln!(md, "\n| recommendation | PCNSL | GBM |\n|---|---|---|");
        for (label, row) in ["lymphoma likely → biopsy", "tumour board", "GBM likely → resection planning"].iter().zip(rec) {
            let _ = writeln!(md, "| {label} | {} | {} |", row[0], row[1]);
        }
        let _ = writeln!(md, "\n| member | AUC (DeLong 95 % CI) |\n|---|---|");
        for (m, a) in g.member_aucs.iter().enumerate() {
            let _ = writeln!(md, "| {m} | {} |", ci(a));
        }
        let _ = writeln!(md, "\n| subgroup | patients (PCNSL) | AUC (DeLong 95 % CI) |\n|---|---|---|");
        for s in &g.subgroups {
            let auc = s.auc.as_ref().map_or("n/a (one class)".to_string(), ci);
            let _ = writeln!(md, "| {} = {} | {} ({}) | {} |", s.attribute, s.value, s.patients, s.pcnsl, auc);
        }
        let _ = writeln!(md, "\n| ensemble size k | subsets | AUC mean ± SD | per-patient SD of P |\n|---|---|---|---|");
        for row in &g.ensemble_size {
            let _ = writeln!(md, "| {} | {} | {:.3} ± {:.3} | {:.4} |", row.k, row.subsets, row.auc_mean, row.auc_sd, row.prediction_sd);
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(split: Split, pcnsl: bool, members: &[f64], mimic: Option<bool>) -> Prediction {
        let mean = members.iter().sum::<f64>() / members.len() as f64;
        Prediction {
            patient_id: String::new(),
            split,
            pcnsl,
            members: members.to_vec(),
            mean,
            calibrated: mean,
            spread: 0.0,
            abstain_reason: None,
            mimic,
        }
    }

    #[test]
    fn the_best_member_is_the_first_of_equal_aucs_and_there_is_none_without_members() {
        assert_eq!(best_of(&[0.8, 0.9, 0.9, 0.7]), Some(1));
        assert_eq!(best_of(&[]), None);
    }

    #[test]
    fn the_member_chosen_on_validation_is_chosen_on_validation_patients_alone() {
        // Member 0 ranks the validation patients perfectly and member 1 reverses them; on the
        // external patients it is the other way round.
        let predictions = vec![
            prediction(Split::Validation, true, &[0.9, 0.1], None),
            prediction(Split::Validation, false, &[0.1, 0.9], None),
            prediction(Split::External, true, &[0.1, 0.9], None),
            prediction(Split::External, false, &[0.9, 0.1], None),
        ];
        assert_eq!(validation_chosen_member(&predictions), Some(0));
        let external: Vec<&Prediction> = predictions.iter().filter(|p| p.split == Split::External).collect();
        let labels: Vec<bool> = external.iter().map(|p| p.pcnsl).collect();
        let aucs: Vec<f64> = member_columns(&external).iter().map(|s| metrics::auc(s, &labels)).collect();
        assert_eq!(best_of(&aucs), Some(1), "after the fact, the external patients favour member 1");
    }

    #[test]
    fn there_is_no_member_chosen_on_validation_without_both_classes_there() {
        let predictions = vec![prediction(Split::Validation, true, &[0.9, 0.1], None), prediction(Split::External, false, &[0.1, 0.9], None)];
        assert_eq!(validation_chosen_member(&predictions), None);
    }

    #[test]
    fn without_mimics_leaves_out_exactly_the_mimics_and_compares_the_ensemble_with_its_best_member_there() {
        let preds = vec![
            prediction(Split::External, true, &[0.9, 0.8], Some(false)),
            prediction(Split::External, true, &[0.7, 0.6], Some(false)),
            prediction(Split::External, false, &[0.2, 0.65], Some(false)),
            prediction(Split::External, false, &[0.1, 0.1], Some(false)),
            // A GBM that looks like a lymphoma: every member calls it PCNSL.
            prediction(Split::External, false, &[0.95, 0.95], Some(true)),
        ];
        let refs: Vec<&Prediction> = preds.iter().collect();
        let w = without_mimics(&refs).expect("every case carries the flag and both classes remain");
        assert_eq!((w.patients, w.pcnsl, w.mimics), (4, 2, 1));
        assert_eq!(w.member_aucs, vec![1.0, 0.75]);
        assert_eq!(w.best_member.member, 0);
        assert_eq!(w.auc.estimate, 1.0);
        assert_eq!(w.best_member.ensemble_vs_member.difference, 0.0);
    }

    #[test]
    fn without_mimics_is_absent_when_any_case_lacks_the_generator_flag() {
        let preds = [prediction(Split::External, true, &[0.9], Some(false)), prediction(Split::External, false, &[0.1], None)];
        let refs: Vec<&Prediction> = preds.iter().collect();
        assert!(without_mimics(&refs).is_none());
    }
}
