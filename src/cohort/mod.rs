//! Synthetic cohorts: DICOM studies of GBM-like and lymphoma-like lesions, for training, the demo
//! and the end-to-end tests.
