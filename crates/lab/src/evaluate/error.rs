//! What can go wrong evaluating an ensemble.

use std::path::PathBuf;

use neurocds_analysis::inference::manifest::ManifestError;

use super::cohort_folder::FolderCohortError;

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
