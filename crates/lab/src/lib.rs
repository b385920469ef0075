//! neurocds-lab: where the ensemble is made and judged, apart from the service that serves it.
//!
//! ```text
//!  cohort       synthetic GBM / lymphoma / out-of-scope studies as DICOM (`neurocds-lab synth`)
//!  dataset      cases → preprocessed model inputs, splits by patient and site
//!  net, train   the member network and the ensemble's training (`neurocds-lab train`)
//!  metrics      AUC, DeLong, bootstrap intervals, calibration
//!  evaluate     validation reports on a cohort or a folder of studies (`neurocds-lab evaluate`)
//!  scope_check  the scope gate on a hospital mix (`neurocds-lab scope-check`)
//! ```
//!
//! It uses the analysis core (`neurocds-analysis`) exactly as the service does, so what is
//! measured here is what runs there. It must not know the service: no HTTP, no database, and
//! the service never links it.

pub mod cohort;
pub mod dataset;
pub mod evaluate;
pub mod metrics;
pub mod net;
pub mod scope_check;
pub mod train;
