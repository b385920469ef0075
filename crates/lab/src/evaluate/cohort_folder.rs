//! A labelled cohort read from a folder of DICOM studies (`neurocds-lab evaluate --cohort DIR`):
//! the labels CSV ([`super::labels`]) names the studies and their truth; each study is read,
//! recognised, assembled ([`crate::imaging::folder`]) and preprocessed exactly as the service
//! does with a study from the PACS. A study that cannot be used is kept with its reason, so the
//! report accounts for every labelled study.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
};

use rayon::prelude::*;

use super::{
    study::LabelledStudy,
    labels::{self, LabelRow, LabelsError},
};
use crate::dataset::{self, CaseInput};
use neurocds_analysis::imaging::{
    SeriesRules, SeriesRulesError,
    folder::{self, FolderError, StudyError},
    preprocess::{self, Recipe},
};

#[derive(Debug, thiserror::Error)]
pub enum FolderCohortError {
    #[error(transparent)]
    Labels(#[from] LabelsError),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Rules(#[from] SeriesRulesError),
    #[error("{dir} holds no DICOM file (files with the DICM preamble, searched recursively)")]
    NoDicom { dir: PathBuf },
}

/// The studies of a folder, prepared, and a one-line description for the report.
pub struct FolderCohort {
    pub studies: Vec<LabelledStudy<'static>>,
    pub description: String,
}

/// Reads the labels, indexes the folder and prepares every labelled study (in parallel).
pub fn prepare(dir: &Path, labels_path: &Path, rules_path: Option<&Path>, recipe: &Recipe) -> Result<FolderCohort, FolderCohortError> {
    let rows = labels::read(labels_path)?;
    let rules = match rules_path {
        Some(p) => SeriesRules::load(p)?,
        None => SeriesRules::default(),
    };
    let index = folder::scan(dir)?;
    if index.studies.is_empty() {
        return Err(FolderCohortError::NoDicom { dir: dir.to_owned() });
    }
    for (path, reason) in &index.unreadable {
        tracing::warn!(file = %path.display(), %reason, "DICOM file skipped: cannot read its header");
    }
    let empty = folder::StudyFiles::new();
    let bar = dataset::progress(rows.len() as u64, "preparing");
    let studies: Vec<LabelledStudy<'static>> = rows
        .par_iter()
        .map(|row| {
            let input = prepare_study(index.studies.get(&row.study_uid).unwrap_or(&empty), &rules, recipe);
            bar.inc(1);
            labelled(row, input)
        })
        .collect();
    bar.finish();
    let labelled_uids: std::collections::HashSet<&str> = rows.iter().map(|r| r.study_uid.as_str()).collect();
    let unlabelled = index.studies.keys().filter(|uid| !labelled_uids.contains(uid.as_str())).count();
    let mut description = format!("DICOM folder {} ({} labelled studies from {}", dir.display(), rows.len(), labels_path.display());
    if unlabelled > 0 {
        description.push_str(&format!("; {unlabelled} unlabelled studies in the folder ignored"));
    }
    if !index.unreadable.is_empty() {
        description.push_str(&format!("; {} unreadable DICOM files skipped, e.g. {}", index.unreadable.len(), index.unreadable[0].0.display()));
    }
    description.push(')');
    Ok(FolderCohort { studies, description })
}

/// Series → volumes → preprocessing; the error is `(reason key, detail)`.
fn prepare_study(series: &folder::StudyFiles, rules: &SeriesRules, recipe: &Recipe) -> Result<CaseInput, (String, String)> {
    let volumes = folder::load_study(series, rules).map_err(|e: StudyError| (e.kind().to_string(), e.to_string()))?;
    let prepared = preprocess::prepare(&volumes.t1c, &volumes.t2, recipe).map_err(|a| {
        let key = serde_json::to_value(a.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_else(|| "preprocessing".into());
        (key, a.reason)
    })?;
    Ok(CaseInput { data: prepared.data, lesion_volume_ml: prepared.lesion_volume_ml, t1c_lesion_mean: prepared.t1c_lesion_mean })
}

fn labelled(row: &LabelRow, input: Result<CaseInput, (String, String)>) -> LabelledStudy<'static> {
    LabelledStudy {
        patient_id: row.patient_id.clone().unwrap_or_else(|| row.study_uid.clone()),
        split: row.effective_split(),
        pcnsl: row.pcnsl,
        attributes: row.attributes(),
        mimic: None,
        input: input.map(Cow::Owned),
    }
}
