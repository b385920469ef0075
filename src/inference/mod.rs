//! The ensemble: TorchScript members described by a manifest (the model card), run on CUDA when
//! there is a GPU and on the CPU otherwise.
//!
//! [`Manifest`] says what the members are and how their output is to be read; [`Ensemble`] loads
//! and verifies them; [`Engine`] owns them on a dedicated inference thread behind a bounded
//! queue. Input is a ready tensor ([`ModelInput`]); this module knows nothing of DICOM or HTTP.

pub mod device;
pub mod engine;
pub mod manifest;
pub mod cohort_folder;
pub mod dataset;
pub mod labels;
pub mod metrics;
pub mod net;
pub mod plot;
pub mod train;
pub mod evaluate;
pub mod scope_check;

pub use device::select_device;
pub use engine::{Engine, EnsembleOutput, InferenceError, ModelInput};
pub use manifest::{Manifest, ManifestError};
