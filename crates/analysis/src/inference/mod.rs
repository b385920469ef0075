//! The ensemble: TorchScript members described by a manifest (the model card), run on CUDA when
//! there is a GPU and on the CPU otherwise.
//!
//! [`Manifest`] says what the members are and how their output is to be read; [`Ensemble`] loads
//! and verifies them; [`Engine`] owns them on a dedicated inference thread behind a bounded
//! queue. Input is a ready tensor ([`ModelInput`]); this module knows nothing of DICOM or HTTP.

pub mod device;
pub mod engine;
pub mod manifest;

pub use device::select_device;
pub use engine::{Engine, EnsembleOutput, InferenceError, ModelInput};
pub use manifest::{Manifest, ManifestError};
