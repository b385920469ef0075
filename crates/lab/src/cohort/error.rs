//! What can go wrong generating or writing a cohort.

/// Errors of cohort generation and writing; each says which case, file or step failed.
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    #[error("invalid cohort specification: {0}")]
    InvalidSpec(String),
    #[error("could not create directory {path}: {source}")]
    CreateDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("could not write {path}: {source}")]
    WriteFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("could not build DICOM file meta for {path}: {message}")]
    DicomMeta { path: std::path::PathBuf, message: String },
    #[error("could not write DICOM file {path}: {message}")]
    DicomWrite { path: std::path::PathBuf, message: String },
    #[error("could not serialise the manifest: {0}")]
    Manifest(#[from] serde_json::Error),
}
