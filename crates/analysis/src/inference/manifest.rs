//! The ensemble's manifest (`models/*/manifest.json`): its model card, in machine-readable form.
//!
//! A hospital uses its own ensemble by pointing `model.manifest` at another manifest of this
//! shape. Every member file is named with its SHA-256; a file whose hash differs is refused.
//!
//! Wire format (abridged):
//! ```json
//! { "name": "neurocds-gbm-pcnsl", "version": "1.0.0",
//!   "classes": ["gbm", "pcnsl"],
//!   "input": { "channels": ["t1c", "t2"], "shape": [32, 32, 32], "spacing_mm": 2.0, ... },
//!   "preprocessing_version": "neurocds-prep/2",
//!   "members": [ { "file": "member-0.pt", "sha256": "…" } ],
//!   "calibration": { "method": "platt", "a": 1.0, "b": 0.0 },
//!   "thresholds": { "lymphoma_likely": 0.6, "gbm_likely": 0.3 },
//!   "max_member_spread": 0.35, "ood": { … }, "training": { … }, … }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest, as read from disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// Output classes in logit order. The second is the one whose probability neurocds reports
    /// (P(primary CNS lymphoma)).
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub preprocessing_version: String,
    pub members: Vec<Member>,
    pub calibration: Calibration,
    pub thresholds: Thresholds,
    pub max_member_spread: f64,
    #[serde(default)]
    pub ood: Option<OodBounds>,
    /// Free-form card sections: training data, intended use, limits, metrics, how it was made.
    #[serde(default)]
    pub card: serde_json::Value,
}

/// The tensor each member expects: `[batch, channels, depth, height, width]`, float32.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputSpec {
    pub channels: Vec<String>,
    /// Depth, height, width of the crop.
    pub shape: [usize; 3],
    pub spacing_mm: f64,
    pub normalisation: String,
}

impl InputSpec {
    /// The preprocessing recipe that produces this input.
    pub fn recipe(&self) -> crate::imaging::preprocess::Recipe {
        crate::imaging::preprocess::Recipe { shape: self.shape, spacing_mm: self.spacing_mm }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub file: String,
    pub sha256: String,
}

/// Maps the ensemble's mean logit-difference to a calibrated probability.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Calibration {
    /// `p = sigmoid(a * logit(p_mean) + b)`, fitted on the validation split.
    Platt { a: f64, b: f64 },
    /// No calibration: the mean probability is reported as is.
    None,
}

impl Calibration {
    pub fn apply(&self, p_mean: f64) -> f64 {
        match self {
            Calibration::None => p_mean,
            Calibration::Platt { a, b } => {
                let p = p_mean.clamp(1e-6, 1.0 - 1e-6);
                let z = a * (p / (1.0 - p)).ln() + b;
                1.0 / (1.0 + (-z).exp())
            }
        }
    }
}

/// Operating thresholds on the calibrated P(lymphoma).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Thresholds {
    pub lymphoma_likely: f64,
    pub gbm_likely: f64,
}

/// Ranges seen in training, outside which the ensemble abstains (input out of distribution).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OodBounds {
    pub lesion_volume_ml: [f64; 2],
    pub t1c_lesion_mean: [f64; 2],
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("model manifest {path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("model manifest {path}: not a valid manifest: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("model manifest {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("model member {file}: SHA-256 is {actual}, the manifest says {expected}; refusing to load it")]
    HashMismatch { file: PathBuf, expected: String, actual: String },
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.into(), source })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|source| ManifestError::Parse { path: path.into(), source })?;
        let invalid = |reason: &str| Err(ManifestError::Invalid { path: path.into(), reason: reason.into() });
        if m.members.is_empty() {
            return invalid("no members");
        }
        if m.classes.len() != 2 {
            return invalid("exactly two classes are expected");
        }
        if m.input.channels.len() != 2 || m.input.shape.contains(&0) {
            return invalid("input must have two channels and a non-empty shape");
        }
        if !(m.thresholds.gbm_likely < m.thresholds.lymphoma_likely) {
            return invalid("thresholds.gbm_likely must be below thresholds.lymphoma_likely");
        }
        Ok(m)
    }

    /// Checks every member file against its recorded SHA-256 and returns their paths.
    pub fn verified_member_paths(&self, dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
        self.members
            .iter()
            .map(|member| {
                let file = dir.join(&member.file);
                let actual = sha256_file(&file).map_err(|source| ManifestError::Read { path: file.clone(), source })?;
                if !actual.eq_ignore_ascii_case(&member.sha256) {
                    return Err(ManifestError::HashMismatch { file, expected: member.sha256.clone(), actual });
                }
                Ok(file)
            })
            .collect()
    }

    /// One hash naming the whole ensemble: SHA-256 over the members' hashes, in order.
    pub fn ensemble_hash(&self) -> String {
        let mut h = Sha256::new();
        for m in &self.members {
            h.update(m.sha256.to_ascii_lowercase().as_bytes());
        }
        hex::encode(h.finalize())
    }
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h)?;
    Ok(hex::encode(h.finalize()))
}
