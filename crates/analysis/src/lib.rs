//! neurocds-analysis: what neurocds concludes from a study, with no network and no database.
//!
//! A study's DICOM headers and pixels come in; a decision goes out:
//!
//! ```text
//!  imaging::series      which series is the T1 post-contrast, which the T2 (site-editable rules)
//!  imaging::volume      instances → one 3-D volume per series, within memory budgets
//!  imaging::preprocess  co-registration, normalisation, the lesion crop the members read
//!  imaging::lesion      candidates and the scope gate: no tumour, no advice
//!  inference            the TorchScript ensemble on CUDA or CPU, behind a bounded queue
//!  decision             calibrated probability bands → biopsy, resection planning, tumour board
//! ```
//!
//! It must not know HTTP, FHIR, CDS Hooks, PostgreSQL or the synthetic cohort: the service
//! (`neurocds`) feeds it studies it retrieved, the lab (`neurocds-lab`) studies it generated.

pub mod decision;
pub mod imaging;
pub mod inference;
