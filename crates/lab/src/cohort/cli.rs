//! `neurocds-lab synth`: writes a synthetic cohort to a folder — one DICOM study per patient, a
//! manifest (`manifest.csv` and `manifest.json`, one row per patient, in index order) and
//! `labels.csv` in the format `neurocds-lab evaluate --cohort DIR` reads (`crates/lab/src/evaluate/labels.rs`).
//!
//! Cases are independent, so they are generated on several threads; the output does not depend
//! on the number of threads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::dicom::{self, StudyFiles};
use super::spec::SeriesKind;
use super::{CohortError, CohortSpec, SyntheticCase, generate_case};

/// Arguments of `neurocds-lab synth`.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of patients.
    #[arg(long, default_value_t = 100)]
    pub patients: usize,
    /// Cohort seed; the same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of lymphoma (PCNSL) cases.
    #[arg(long, default_value_t = 0.5)]
    pub pcnsl_fraction: f64,
    /// Share of studies from external sites.
    #[arg(long, default_value_t = 0.45)]
    pub external_fraction: f64,
    /// Share of out-of-scope normal brains (no lesion).
    #[arg(long, default_value_t = 0.0)]
    pub normal_fraction: f64,
    /// Share of out-of-scope extra-axial (dural-based, meningioma-like) masses.
    #[arg(long, default_value_t = 0.0)]
    pub extra_axial_fraction: f64,
    /// Draw the full normal enhancing anatomy (falx, transverse and straight sinuses, vessels,
    /// pituitary); on by itself whenever out-of-scope studies are asked for.
    #[arg(long)]
    pub enhancing_anatomy: bool,
    /// Where the brains come from, comma-separated: `phantom` (the procedural phantom),
    /// `colin27` and `mni152` (real brain templates, made by `scripts/bootstrap.sh`; mni152 is
    /// the external-anatomy test set and never used in training).
    #[arg(long, default_value = "phantom")]
    pub anatomy: String,
    /// Write only the manifest, no DICOM files.
    #[arg(long)]
    pub no_dicom: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// One manifest row: what a training script or a test needs to know about a patient without
/// opening the DICOM files. `mimic` and the lesion volumes are ground truth for error analysis,
/// never model inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestRow {
    pub index: usize,
    pub patient_id: String,
    pub label: &'static str,
    pub age: u32,
    pub sex: &'static str,
    pub site: String,
    pub external: bool,
    pub vendor: &'static str,
    pub field_strength: f64,
    pub acquired_on: String,
    pub study_uid: String,
    pub t1c_series_uid: String,
    pub t2_series_uid: String,
    pub phenotype: String,
    pub lesion_count: usize,
    pub lesion_centre_lps: [f64; 3],
    pub enhancing_ml: f64,
    pub necrotic_ml: f64,
    pub oedema_ml: f64,
    pub mimic: bool,
    /// Where the brain came from: `phantom`, `colin27` or `mni152`.
    pub anatomy: &'static str,
    /// Folder of the study relative to the output folder; empty with `--no-dicom`.
    pub study_dir: String,
}

impl ManifestRow {
    pub fn from_case(case: &SyntheticCase, study: Option<&StudyFiles>, out: &Path) -> Self {
        let study_dir = study
            .map(|s| s.study_dir.strip_prefix(out).unwrap_or(&s.study_dir).to_string_lossy().into_owned())
            .unwrap_or_default();
        ManifestRow {
            index: case.index,
            patient_id: case.patient_id.clone(),
            label: match case.presentation {
                super::Presentation::Tumour => case.label.as_str(),
                other => other.as_str(),
            },
            age: case.age,
            sex: case.sex.dicom_code(),
            site: case.site.clone(),
            external: case.external,
            vendor: match case.vendor {
                super::Vendor::Siemens => "siemens",
                super::Vendor::Ge => "ge",
                super::Vendor::Philips => "philips",
            },
            field_strength: case.field_strength_t,
            acquired_on: case.acquired_on.to_string(),
            study_uid: case.study_uid.clone(),
            t1c_series_uid: case.series_uid(SeriesKind::T1PostContrast),
            t2_series_uid: case.series_uid(SeriesKind::T2),
            phenotype: case.phenotype.clone(),
            anatomy: case.scene.anatomy_source,
            lesion_count: case.truth.lesion_count,
            lesion_centre_lps: case.lesion_centre_lps.map(round2),
            enhancing_ml: round2(case.truth.enhancing_ml),
            necrotic_ml: round2(case.truth.necrotic_ml),
            oedema_ml: round2(case.truth.oedema_ml),
            mimic: case.truth.mimic,
            study_dir,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs `neurocds-lab synth`.
pub fn run(args: SynthArgs) -> Result<(), CohortError> {
    let mut spec = CohortSpec::new(args.seed, args.patients);
    spec.pcnsl_fraction = args.pcnsl_fraction;
    spec.external_fraction = args.external_fraction;
    spec.normal_fraction = args.normal_fraction;
    spec.extra_axial_fraction = args.extra_axial_fraction;
    spec.enhancing_anatomy = args.enhancing_anatomy || args.normal_fraction > 0.0 || args.extra_axial_fraction > 0.0;
    spec.anatomies = super::template::parse_anatomies(&args.anatomy)?;
    spec.validate()?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let rows = write_cohort(&spec, &args.out, !args.no_dicom, threads, !args.quiet)?;
    let pcnsl = rows.iter().filter(|r| r.label == "pcnsl").count();
    let out_of_scope = rows.iter().filter(|r| !matches!(r.label, "gbm" | "pcnsl")).count();
    let external = rows.iter().filter(|r| r.external).count();
    println!(
        "{} patients ({} GBM, {} PCNSL; {} external) written to {}",
        rows.len(),
        rows.len() - pcnsl - out_of_scope,
        pcnsl,
        external,
        args.out.display()
    );
    Ok(())
}

/// Generates the cohort on `threads` threads, writes the studies (if `dicom`) and the manifest,
/// and returns the manifest rows in index order.
pub fn write_cohort(spec: &CohortSpec, out: &Path, dicom: bool, threads: usize, progress: bool) -> Result<Vec<ManifestRow>, CohortError> {
    spec.validate()?;
    std::fs::create_dir_all(out).map_err(|source| CohortError::CreateDir { path: out.to_path_buf(), source })?;
    let bar = if progress {
        indicatif::ProgressBar::new(spec.patients as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} patients  {elapsed} elapsed, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let results: Mutex<Vec<Result<ManifestRow, CohortError>>> = Mutex::new(Vec::with_capacity(spec.patients));
    let threads = threads.clamp(1, spec.patients.max(1));
    std::thread::scope(|scope| {
        for worker in 0..threads {
            let results = &results;
            let bar = &bar;
            scope.spawn(move || {
                for index in (worker..spec.patients).step_by(threads) {
                    let case = generate_case(spec, index);
                    let row = if dicom {
                        dicom::write_study(&case, out).map(|study| ManifestRow::from_case(&case, Some(&study), out))
                    } else {
                        Ok(ManifestRow::from_case(&case, None, out))
                    };
                    // A poisoned lock means another worker panicked; keep its partial results.
                    results.lock().unwrap_or_else(|p| p.into_inner()).push(row);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut rows = results.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().collect::<Result<Vec<_>, _>>()?;
    rows.sort_by_key(|r| r.index);
    write_manifest(out, &rows)?;
    Ok(rows)
}

/// Writes `manifest.csv`, `manifest.json` and `labels.csv`.
pub fn write_manifest(out: &Path, rows: &[ManifestRow]) -> Result<(), CohortError> {
    write_labels(out, rows)?;
    let json_path = out.join("manifest.json");
    let json = serde_json::to_vec_pretty(rows)?;
    std::fs::write(&json_path, json).map_err(|source| CohortError::WriteFile { path: json_path, source })?;

    let csv_path = out.join("manifest.csv");
    let mut csv = Vec::new();
    let write_err = |source| CohortError::WriteFile { path: csv_path.clone(), source };
    writeln!(
        csv,
        "index,patient_id,label,age,sex,site,external,vendor,field_strength,acquired_on,study_uid,t1c_series_uid,t2_series_uid,phenotype,lesion_count,lesion_centre_x,lesion_centre_y,lesion_centre_z,enhancing_ml,necrotic_ml,oedema_ml,mimic,study_dir"
    )
    .map_err(write_err)?;
    for r in rows {
        writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.index,
            csv_field(&r.patient_id),
            r.label,
            r.age,
            r.sex,
            csv_field(&r.site),
            r.external,
            r.vendor,
            r.field_strength,
            r.acquired_on,
            r.study_uid,
            r.t1c_series_uid,
            r.t2_series_uid,
            r.phenotype,
            r.lesion_count,
            r.lesion_centre_lps[0],
            r.lesion_centre_lps[1],
            r.lesion_centre_lps[2],
            r.enhancing_ml,
            r.necrotic_ml,
            r.oedema_ml,
            r.mimic,
            csv_field(&r.study_dir),
        )
        .map_err(write_err)?;
    }
    std::fs::write(&csv_path, csv).map_err(|source| CohortError::WriteFile { path: csv_path.clone(), source })
}

/// Writes `labels.csv`: the columns `evaluate` reads for a folder cohort. `site` is `internal` or
/// `external` (the split `evaluate` uses for an unseen synthetic cohort); the site's name is in
/// the manifest.
fn write_labels(out: &Path, rows: &[ManifestRow]) -> Result<(), CohortError> {
    let path = out.join("labels.csv");
    let mut csv = String::from("study_uid,label,patient_id,age,sex,site,vendor,acquired\n");
    // Out-of-scope studies have no histology to score against.
    for r in rows.iter().filter(|r| matches!(r.label, "gbm" | "pcnsl")) {
        let site = if r.external { "external" } else { "internal" };
        csv.push_str(&format!("{},{},{},{},{},{},{},{}\n", r.study_uid, r.label, csv_field(&r.patient_id), r.age, r.sex, site, r.vendor, r.acquired_on));
    }
    std::fs::write(&path, csv).map_err(|source| CohortError::WriteFile { path, source })
}

/// RFC 4180 quoting where a field needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}
