//! `neurocds-lab evaluate`: runs a shipped ensemble on a labelled cohort and reports it the way
//! TRIPOD+AI asks: discrimination with bootstrap and DeLong intervals, ensemble vs best member,
//! operating points, calibration, subgroups, and the effect of ensemble size.
//!
//! The members are the TorchScript files the service loads (hash-checked through the manifest);
//! inputs come from the service's own preprocessing; calibration and abstention follow
//! [`neurocds_analysis::inference::engine::summarise`]. Output: `evaluation.json`, `report.md` and PNG plots in `--out`.
//!
//! Two kinds of cohort: a synthetic one regenerated in memory (`--cohort seed=S,patients=N`),
//! and a folder of DICOM studies with a labels CSV (`--cohort DIR`, see [`labels`] and
//! [`cohort_folder`]), read the way the service reads a study from the PACS.
//!
//! The parts: [`study`] (what is known of one study), [`score`] (members run, metrics per
//! group), [`report`] (the results as data), [`write`] (JSON, Markdown, plots); this file is
//! the command.

pub mod cohort_folder;
pub mod error;
pub mod labels;
pub mod plot;
pub mod report;
pub mod score;
pub mod study;
pub mod write;

use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

use neurocds_analysis::inference::manifest::Manifest;

pub use error::EvaluateError;
pub use report::{
    AbstainedStudy, ChosenMember, EnsembleSizeRow, EvaluationReport, GroupReport, Prediction, ReportSettings, Subgroup, TrainingCohortRef, WithoutMimics,
};
use score::best_of;
pub use score::{evaluate_cases, evaluate_studies, load_members, member_probabilities};
pub use study::LabelledStudy;
pub use write::{markdown, write_report};

use crate::{cohort::CohortSpec, dataset};

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
    std::iter::once("neurocds-lab".to_string()).chain(std::env::args().skip(1).map(quote)).collect::<Vec<_>>().join(" ")
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
