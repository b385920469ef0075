//! The recognition rules: `config/series-rules.toml` (site-editable), read, checked and
//! compiled once. What the rules mean is in that file; how they are applied is in
//! [`super::classify`].

use std::path::{Path, PathBuf};

use regex_lite::{Regex, RegexBuilder};
use serde::Deserialize;

use super::metadata::Plane;

/// A rules file that cannot be read, parsed or compiled. Names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum SeriesRulesError {
    #[error("series rules {path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("series rules {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("series rules {path}: `{key}`: {reason}")]
    Invalid { path: PathBuf, key: String, reason: String },
}

/// The shipped rules, compiled into the binary so that `SeriesRules::default()` and the file
/// can never disagree.
const DEFAULT_RULES: &str = include_str!("../../../../../config/series-rules.toml");

/// Recognition rules, parsed and compiled once (see `config/series-rules.toml` for the meaning
/// of every field).
#[derive(Debug, Clone)]
pub struct SeriesRules {
    pub(super) modalities: Vec<String>,
    pub(super) min_slices: usize,
    pub(super) localizer: Patterns,
    pub(super) localizer_image_type: Vec<String>,
    pub(super) derived_image_type: Vec<String>,
    pub(super) derived_combinations: Vec<Vec<String>>,
    pub(super) derived: Patterns,
    pub(super) dwi: Patterns,
    pub(super) flair: Patterns,
    pub(super) flair_ti: Range,
    pub(super) t2_tr: Range,
    pub(super) t2_te: Range,
    pub(super) t2: Patterns,
    pub(super) t2_not: Patterns,
    pub(super) t1_tr: Range,
    pub(super) t1_te: Range,
    pub(super) t1_ti: Range,
    pub(super) t1_ir_tr_max: f64,
    pub(super) t1_gre_te_max: f64,
    pub(super) t1: Patterns,
    pub(super) agent_none: Vec<String>,
    pub(super) post: Patterns,
    pub(super) pre: Patterns,
    pub(super) acquisition_order: bool,
    pub(super) same_protocol_tolerance: f64,
    pub(super) prefer: Option<Plane>,
    pub(super) plane_min_cosine: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    modalities: Vec<String>,
    min_slices: usize,
    localizer: LocalizerFile,
    derived: DerivedFile,
    dwi: DescriptionFile,
    flair: FlairFile,
    t2: T2File,
    t1: T1File,
    contrast: ContrastFile,
    selection: SelectionFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalizerFile {
    description: Vec<String>,
    image_type: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DerivedFile {
    image_type: Vec<String>,
    image_type_combinations: Vec<Vec<String>>,
    description: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescriptionFile {
    description: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlairFile {
    description: Vec<String>,
    ti_ms: [f64; 2],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct T2File {
    tr_ms: [f64; 2],
    te_ms: [f64; 2],
    description: Vec<String>,
    not_description: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct T1File {
    tr_ms: [f64; 2],
    te_ms: [f64; 2],
    ti_ms: [f64; 2],
    ir_tr_max_ms: f64,
    gradient_echo_te_max_ms: f64,
    description: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContrastFile {
    agent_none_values: Vec<String>,
    post_description: Vec<String>,
    pre_description: Vec<String>,
    acquisition_order: bool,
    same_protocol_tolerance: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectionFile {
    prefer_orientation: String,
    plane_min_cosine: f64,
}

/// Case-insensitive patterns matched against a series description.
#[derive(Debug, Clone)]
pub(super) struct Patterns(Vec<Regex>);

impl Patterns {
    fn compile(sources: &[String], key: &str, path: &Path) -> Result<Patterns, SeriesRulesError> {
        sources
            .iter()
            .map(|s| {
                RegexBuilder::new(s).case_insensitive(true).build().map_err(|e| SeriesRulesError::Invalid {
                    path: path.to_owned(),
                    key: key.into(),
                    reason: format!("pattern {s:?} does not compile: {e}"),
                })
            })
            .collect::<Result<_, _>>()
            .map(Patterns)
    }

    /// The first pattern that matches, for the reason text.
    pub(super) fn find(&self, text: Option<&str>) -> Option<&str> {
        let text = text?;
        self.0.iter().find(|r| r.is_match(text)).map(|r| r.as_str())
    }
}

/// An inclusive range of milliseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Range {
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Range {
    fn new([min, max]: [f64; 2], key: &str, path: &Path) -> Result<Range, SeriesRulesError> {
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(SeriesRulesError::Invalid {
                path: path.to_owned(),
                key: key.into(),
                reason: format!("[{min}, {max}] is not a range (need min <= max)"),
            });
        }
        Ok(Range { min, max })
    }

    pub(super) fn contains(&self, v: f64) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

impl Default for SeriesRules {
    /// The rules shipped in `config/series-rules.toml`.
    fn default() -> Self {
        match SeriesRules::parse(DEFAULT_RULES, Path::new("config/series-rules.toml")) {
            Ok(rules) => rules,
            // The file is compiled in and covered by a unit test: this cannot fail at run time.
            Err(e) => unreachable!("the shipped series rules are invalid: {e}"),
        }
    }
}

impl SeriesRules {
    /// Reads and compiles a rules file.
    pub fn load(path: impl AsRef<Path>) -> Result<SeriesRules, SeriesRulesError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SeriesRulesError::Read { path: path.to_owned(), source })?;
        SeriesRules::parse(&text, path)
    }

    /// Compiles rules from TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SeriesRules, SeriesRulesError> {
        let f: RulesFile = toml::from_str(text).map_err(|source| SeriesRulesError::Parse { path: path.to_owned(), source })?;
        let invalid = |key: &str, reason: String| SeriesRulesError::Invalid { path: path.to_owned(), key: key.into(), reason };
        let prefer = match f.selection.prefer_orientation.to_ascii_lowercase().as_str() {
            "axial" => Some(Plane::Axial),
            "coronal" => Some(Plane::Coronal),
            "sagittal" => Some(Plane::Sagittal),
            "any" => None,
            other => return Err(invalid("selection.prefer_orientation", format!("{other:?} is not axial, coronal, sagittal or any"))),
        };
        if !(0.0..=1.0).contains(&f.selection.plane_min_cosine) {
            return Err(invalid("selection.plane_min_cosine", "must lie between 0 and 1".into()));
        }
        if !(0.0..1.0).contains(&f.contrast.same_protocol_tolerance) {
            return Err(invalid("contrast.same_protocol_tolerance", "must lie in [0, 1)".into()));
        }
        let upper = |v: &[String]| v.iter().map(|s| s.trim().to_ascii_uppercase()).collect::<Vec<_>>();
        Ok(SeriesRules {
            modalities: upper(&f.modalities),
            min_slices: f.min_slices,
            localizer: Patterns::compile(&f.localizer.description, "localizer.description", path)?,
            localizer_image_type: upper(&f.localizer.image_type),
            derived_image_type: upper(&f.derived.image_type),
            derived_combinations: f.derived.image_type_combinations.iter().map(|c| upper(c)).collect(),
            derived: Patterns::compile(&f.derived.description, "derived.description", path)?,
            dwi: Patterns::compile(&f.dwi.description, "dwi.description", path)?,
            flair: Patterns::compile(&f.flair.description, "flair.description", path)?,
            flair_ti: Range::new(f.flair.ti_ms, "flair.ti_ms", path)?,
            t2_tr: Range::new(f.t2.tr_ms, "t2.tr_ms", path)?,
            t2_te: Range::new(f.t2.te_ms, "t2.te_ms", path)?,
            t2: Patterns::compile(&f.t2.description, "t2.description", path)?,
            t2_not: Patterns::compile(&f.t2.not_description, "t2.not_description", path)?,
            t1_tr: Range::new(f.t1.tr_ms, "t1.tr_ms", path)?,
            t1_te: Range::new(f.t1.te_ms, "t1.te_ms", path)?,
            t1_ti: Range::new(f.t1.ti_ms, "t1.ti_ms", path)?,
            t1_ir_tr_max: f.t1.ir_tr_max_ms,
            t1_gre_te_max: f.t1.gradient_echo_te_max_ms,
            t1: Patterns::compile(&f.t1.description, "t1.description", path)?,
            agent_none: f.contrast.agent_none_values.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
            post: Patterns::compile(&f.contrast.post_description, "contrast.post_description", path)?,
            pre: Patterns::compile(&f.contrast.pre_description, "contrast.pre_description", path)?,
            acquisition_order: f.contrast.acquisition_order,
            same_protocol_tolerance: f.contrast.same_protocol_tolerance,
            prefer,
            plane_min_cosine: f.selection.plane_min_cosine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_compile() {
        SeriesRules::parse(DEFAULT_RULES, Path::new("config/series-rules.toml")).expect("shipped rules");
    }
}
