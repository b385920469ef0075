//! Series recognition: which series of a prior MR study is the T1 post-contrast (T1c) and which
//! the T2 that the model reads.
//!
//! The decision uses header fields only (the DICOMweb series metadata, before any pixel is
//! downloaded): TR, TE, TI, ScanningSequence, ContrastBolusAgent, ImageType, the description
//! and the acquisition order. The thresholds and keyword patterns live in a site-editable file,
//! `config/series-rules.toml`, in the spirit of MONAI Deploy's series selection rules. Every
//! series gets a verdict with a reason, chosen or not, because the audit trail must say why a
//! series was or was not used.
//!
//! [`metadata`] holds what is read and answered, [`rules`] the compiled rules file, [`classify`]
//! how they are applied.

pub mod classify;
pub mod metadata;
pub mod rules;

pub use classify::{needs_all_instances, recognition_path, select_series};
pub use metadata::{SeriesClass, SeriesMetadata, SeriesSelection, SeriesVerdict};
pub use rules::{SeriesRules, SeriesRulesError};
