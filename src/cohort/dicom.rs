//! Writes a synthetic case as a DICOM MR study.
