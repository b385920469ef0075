//! `neurocds synth`: writes a synthetic cohort (DICOM studies and a manifest) to a folder.
