//! From DICOM to a model-ready tensor: series recognition (T1 post-contrast, T2), volume
//! assembly, preprocessing (co-registration, normalisation, lesion localisation, crop), key images;
//! and, for offline validation, studies read from a folder of DICOM files (`folder`).
//!
//! Pure computation on DICOM objects and arrays: no HTTP, no database, no tensors library.

mod bias;
pub mod codestream;
pub mod dicom_json;
pub mod folder;
mod geometry;
pub mod keyimage;
pub mod lesion;
mod morphology;
pub mod preprocess;
pub mod series;
pub mod volume;

pub use series::{SeriesClass, SeriesMetadata, SeriesRules, SeriesRulesError, SeriesSelection, SeriesVerdict, needs_all_instances, recognition_path, select_series};
pub use volume::{StackPlan, Volume, VolumeError};
