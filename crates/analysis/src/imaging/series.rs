//! Series recognition: which series of a prior MR study is the T1 post-contrast (T1c) and which
//! the T2 that the model reads.
//!
//! The decision uses header fields only (the DICOMweb series metadata, before any pixel is
//! downloaded): TR, TE, TI, ScanningSequence, ContrastBolusAgent, ImageType, the description
//! and the acquisition order. The thresholds and keyword patterns live in a site-editable file,
//! `config/series-rules.toml`, in the spirit of MONAI Deploy's series selection rules. Every
//! series gets a verdict with a reason, chosen or not, because the audit trail must say why a
//! series was or was not used.

use std::path::{Path, PathBuf};

use regex_lite::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// The header fields of one series that recognition needs, read from the DICOM JSON metadata
/// of its instances (first instance, or the functional groups of an enhanced multi-frame one).
/// Every field but the UID may be missing: archives differ in what they keep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesMetadata {
    pub series_uid: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub series_number: Option<i64>,
    pub manufacturer: Option<String>,
    pub repetition_time_ms: Option<f64>,
    pub echo_time_ms: Option<f64>,
    pub inversion_time_ms: Option<f64>,
    /// ScanningSequence values (SE, IR, GR, EP, RM).
    pub scanning_sequence: Vec<String>,
    /// SequenceVariant values (SK, MTC, SS, TRSS, SP, MP, OSP, NONE).
    pub sequence_variant: Vec<String>,
    pub contrast_bolus_agent: Option<String>,
    pub image_type: Vec<String>,
    /// "2D" or "3D".
    pub mr_acquisition_type: Option<String>,
    pub image_orientation: Option<[f64; 6]>,
    /// Row spacing, column spacing (mm).
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub instance_count: usize,
    /// Slices: instances times frames (an enhanced multi-frame series is one instance).
    pub slice_count: usize,
    /// AcquisitionTime, else SeriesTime, as DICOM TM text (HHMMSS.FFFFFF).
    pub acquisition_time: Option<String>,
    pub series_time: Option<String>,
    pub frame_of_reference_uid: Option<String>,
}

/// What a series is, as far as the model is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeriesClass {
    T1PostContrast,
    T2,
    T1Pre,
    Flair,
    Dwi,
    Localizer,
    Derived,
    Other,
}

/// The judgement on one series, for the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesVerdict {
    pub series_uid: String,
    pub description: Option<String>,
    pub class: SeriesClass,
    pub chosen: bool,
    pub reason: String,
}

/// The series chosen for the model (if any) and the verdict on every series of the study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesSelection {
    pub t1c: Option<String>,
    pub t2: Option<String>,
    pub verdicts: Vec<SeriesVerdict>,
}

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
const DEFAULT_RULES: &str = include_str!("../../../../config/series-rules.toml");

/// Recognition rules, parsed and compiled once (see `config/series-rules.toml` for the meaning
/// of every field).
#[derive(Debug, Clone)]
pub struct SeriesRules {
    modalities: Vec<String>,
    min_slices: usize,
    localizer: Patterns,
    localizer_image_type: Vec<String>,
    derived_image_type: Vec<String>,
    derived_combinations: Vec<Vec<String>>,
    derived: Patterns,
    dwi: Patterns,
    flair: Patterns,
    flair_ti: Range,
    t2_tr: Range,
    t2_te: Range,
    t2: Patterns,
    t2_not: Patterns,
    t1_tr: Range,
    t1_te: Range,
    t1_ti: Range,
    t1_ir_tr_max: f64,
    t1_gre_te_max: f64,
    t1: Patterns,
    agent_none: Vec<String>,
    post: Patterns,
    pre: Patterns,
    acquisition_order: bool,
    same_protocol_tolerance: f64,
    prefer: Option<Plane>,
    plane_min_cosine: f64,
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
struct Patterns(Vec<Regex>);

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
    fn find(&self, text: Option<&str>) -> Option<&str> {
        let text = text?;
        self.0.iter().find(|r| r.is_match(text)).map(|r| r.as_str())
    }
}

/// An inclusive range of milliseconds.
#[derive(Debug, Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
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

    fn contains(&self, v: f64) -> bool {
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

/// The anatomical plane of a series, from its slice normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plane {
    Axial,
    Coronal,
    Sagittal,
    Oblique,
}

impl Plane {
    fn of(meta: &SeriesMetadata, min_cosine: f64) -> Option<Plane> {
        let o = meta.image_orientation?;
        let n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
        let norm = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        if norm < 1e-6 {
            return None;
        }
        let c = [n[0].abs() / norm, n[1].abs() / norm, n[2].abs() / norm];
        Some(if c[2] >= min_cosine {
            Plane::Axial
        } else if c[1] >= min_cosine {
            Plane::Coronal
        } else if c[0] >= min_cosine {
            Plane::Sagittal
        } else {
            Plane::Oblique
        })
    }

    fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
            Plane::Oblique => "oblique",
        }
    }
}

/// Whether a T1's contrast state is known from its own header or still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contrast {
    Post,
    Pre,
    Unknown,
}

/// The first-pass class of one series (before acquisition order settles ambiguous T1s).
struct Judged {
    class: SeriesClass,
    contrast: Contrast,
    reason: String,
    /// Why a T1 of unknown contrast is a T1: the start of its reason if acquisition order
    /// settles it.
    t1_basis: Option<String>,
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:.0}"))
}

fn timing(m: &SeriesMetadata) -> String {
    let mut s = format!("TR {} ms, TE {} ms", fmt_ms(m.repetition_time_ms), fmt_ms(m.echo_time_ms));
    if let Some(ti) = m.inversion_time_ms {
        s.push_str(&format!(", TI {ti:.0} ms"));
    }
    s
}

fn has(values: &[String], wanted: &str) -> bool {
    values.iter().any(|v| v.trim().eq_ignore_ascii_case(wanted))
}

impl SeriesRules {
    fn judge(&self, m: &SeriesMetadata) -> Judged {
        let judged = |class, reason: String| Judged { class, contrast: Contrast::Unknown, reason, t1_basis: None };
        let desc = m.description.as_deref();
        let modality = m.modality.as_deref().unwrap_or("").trim().to_ascii_uppercase();
        if !self.modalities.contains(&modality) {
            return judged(SeriesClass::Other, format!("modality {:?} is not {}", modality, self.modalities.join("/")));
        }
        if let Some(p) = self.localizer.find(desc) {
            return judged(SeriesClass::Localizer, format!("description matches localizer pattern {p:?}"));
        }
        if let Some(v) = self.localizer_image_type.iter().find(|v| has(&m.image_type, v)) {
            return judged(SeriesClass::Localizer, format!("ImageType contains {v}"));
        }
        if m.slice_count < self.min_slices {
            return judged(SeriesClass::Localizer, format!("{} slices, fewer than the {} a volume needs", m.slice_count, self.min_slices));
        }
        if let Some(v) = self.derived_image_type.iter().find(|v| has(&m.image_type, v)) {
            return judged(SeriesClass::Derived, format!("ImageType contains {v} (computed from another series)"));
        }
        if let Some(c) = self.derived_combinations.iter().find(|c| !c.is_empty() && c.iter().all(|v| has(&m.image_type, v))) {
            return judged(SeriesClass::Derived, format!("ImageType contains {} (computed from another series)", c.join("\\")));
        }
        if let Some(p) = self.derived.find(desc) {
            return judged(SeriesClass::Derived, format!("description matches derived-series pattern {p:?}"));
        }
        if let Some(p) = self.dwi.find(desc) {
            return judged(SeriesClass::Dwi, format!("description matches diffusion pattern {p:?}"));
        }
        if has(&m.scanning_sequence, "EP") {
            return judged(SeriesClass::Other, "echo-planar acquisition (perfusion, functional or diffusion), not a structural T1/T2".into());
        }
        let ir = has(&m.scanning_sequence, "IR");
        let ti = m.inversion_time_ms;
        let flair_ti = ti.is_some_and(|t| self.flair_ti.contains(t));
        if flair_ti && (ir || m.echo_time_ms.is_none_or(|te| te >= self.t2_te.min)) {
            return judged(SeriesClass::Flair, format!("fluid-attenuated inversion recovery ({})", timing(m)));
        }
        if let Some(p) = self.flair.find(desc) {
            // GE and Philips "T1 FLAIR" is a T1-weighted inversion recovery: its TI and TE say so.
            let t1_flair = ti.is_some_and(|t| self.t1_ti.contains(t)) && m.echo_time_ms.is_some_and(|te| self.t1_te.contains(te));
            if !t1_flair {
                return judged(SeriesClass::Flair, format!("description matches FLAIR pattern {p:?} ({})", timing(m)));
            }
        }
        if let Some(p) = self.t2_not.find(desc) {
            return judged(SeriesClass::Other, format!("description matches T2*/susceptibility pattern {p:?}"));
        }
        let (tr, te) = (m.repetition_time_ms, m.echo_time_ms);
        let gre = has(&m.scanning_sequence, "GR");
        if let (Some(tr), Some(te)) = (tr, te) {
            if self.t2_tr.contains(tr) && self.t2_te.contains(te) && !ir {
                return judged(SeriesClass::T2, format!("T2-weighted timing ({})", timing(m)));
            }
            let ir_t1 = ti.is_some_and(|t| self.t1_ti.contains(t)) && tr <= self.t1_ir_tr_max;
            if self.t1_te.contains(te) && (self.t1_tr.contains(tr) || ir_t1) {
                if gre && !ir_t1 && te > self.t1_gre_te_max {
                    return judged(SeriesClass::Other, format!("gradient echo with TE {te:.0} ms is T2*-weighted ({})", timing(m)));
                }
                return self.judge_t1(m, format!("T1-weighted timing ({})", timing(m)));
            }
            return judged(SeriesClass::Other, format!("timing is neither T1 nor T2 weighted ({})", timing(m)));
        }
        // No usable timing: only the description is left.
        if let Some(p) = self.t2.find(desc) {
            return judged(SeriesClass::T2, format!("no TR/TE; description matches T2 pattern {p:?}"));
        }
        if let Some(p) = self.t1.find(desc) {
            return self.judge_t1(m, format!("no TR/TE; description matches T1 pattern {p:?}"));
        }
        judged(SeriesClass::Other, "no TR/TE and no recognisable description".into())
    }

    /// Pre or post contrast, from the series' own header; acquisition order may settle
    /// `Unknown` later.
    fn judge_t1(&self, m: &SeriesMetadata, why_t1: String) -> Judged {
        let post = |reason: String| Judged { class: SeriesClass::T1PostContrast, contrast: Contrast::Post, reason, t1_basis: None };
        if let Some(agent) = self.agent_given(m) {
            return post(format!("{why_t1}; ContrastBolusAgent {agent:?}"));
        }
        let desc = m.description.as_deref();
        if let Some(p) = self.pre.find(desc) {
            return Judged { class: SeriesClass::T1Pre, contrast: Contrast::Pre, reason: format!("{why_t1}; description matches pre-contrast pattern {p:?}"), t1_basis: None };
        }
        if let Some(p) = self.post.find(desc) {
            return post(format!("{why_t1}; description matches post-contrast pattern {p:?}"));
        }
        Judged {
            class: SeriesClass::T1Pre,
            contrast: Contrast::Unknown,
            reason: format!("{why_t1}; no contrast agent recorded and no post-contrast keyword"),
            t1_basis: Some(why_t1),
        }
    }

    /// The contrast agent a series records, unless the value means "none".
    fn agent_given<'m>(&self, m: &'m SeriesMetadata) -> Option<&'m str> {
        let agent = m.contrast_bolus_agent.as_deref()?.trim();
        (!self.agent_none.contains(&agent.to_ascii_lowercase())).then_some(agent)
    }

    fn same_protocol(&self, a: &SeriesMetadata, b: &SeriesMetadata) -> bool {
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= self.same_protocol_tolerance * x.abs().max(y.abs()).max(1e-9),
            (None, None) => true,
            _ => false,
        };
        close(a.repetition_time_ms, b.repetition_time_ms)
            && close(a.echo_time_ms, b.echo_time_ms)
            && close(a.inversion_time_ms, b.inversion_time_ms)
            && a.mr_acquisition_type == b.mr_acquisition_type
    }
}

/// Seconds since midnight from DICOM TM text (HHMMSS.FFFFFF, or HH:MM:SS in old files).
fn seconds_of_day(tm: &str) -> Option<f64> {
    let t: String = tm.trim().chars().filter(|c| *c != ':').collect();
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    if whole.len() < 2 || !whole.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let part = |r: std::ops::Range<usize>| whole.get(r).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let frac: f64 = if frac.is_empty() { 0.0 } else { format!("0.{frac}").parse().ok()? };
    Some(part(0..2) * 3600.0 + part(2..4) * 60.0 + part(4..6) + frac)
}

/// When a series was acquired, for ordering within a study: AcquisitionTime, then SeriesTime,
/// then SeriesNumber (scanners number series in the order they run them).
fn acquisition_key(m: &SeriesMetadata) -> (Option<f64>, Option<i64>) {
    let t = m.acquisition_time.as_deref().and_then(seconds_of_day).or_else(|| m.series_time.as_deref().and_then(seconds_of_day));
    (t, m.series_number)
}

/// Whether `a` was acquired before `b`; `None` when the headers cannot say.
fn acquired_before(a: &SeriesMetadata, b: &SeriesMetadata) -> Option<bool> {
    match (acquisition_key(a), acquisition_key(b)) {
        ((Some(ta), _), (Some(tb), _)) if ta != tb => Some(ta < tb),
        ((_, Some(na)), (_, Some(nb))) if na != nb => Some(na < nb),
        _ => None,
    }
}

fn label(m: &SeriesMetadata) -> String {
    match (&m.description, m.series_number) {
        (Some(d), Some(n)) => format!("#{n} {d:?}"),
        (Some(d), None) => format!("{d:?}"),
        (None, Some(n)) => format!("#{n}"),
        (None, None) => m.series_uid.clone(),
    }
}

/// Classifies every series and picks the best T1 post-contrast and T2.
pub fn select_series(rules: &SeriesRules, series: &[SeriesMetadata]) -> SeriesSelection {
    let mut judged: Vec<Judged> = series.iter().map(|m| rules.judge(m)).collect();

    // Acquisition order settles T1s whose own header says nothing about contrast.
    if rules.acquisition_order {
        // Any series recording an agent counts (a perfusion run is often where it was given).
        let known_post: Vec<usize> = (0..series.len()).filter(|&i| judged[i].contrast == Contrast::Post || rules.agent_given(&series[i]).is_some()).collect();
        let t1s: Vec<usize> = (0..series.len()).filter(|&i| matches!(judged[i].class, SeriesClass::T1Pre | SeriesClass::T1PostContrast)).collect();
        let mut settled = Vec::new();
        for &i in &t1s {
            if judged[i].contrast != Contrast::Unknown {
                continue;
            }
            if let Some(&p) = known_post.iter().find(|&&p| acquired_before(&series[p], &series[i]) == Some(true)) {
                settled.push((i, format!("acquired after post-contrast series {}", label(&series[p]))));
            } else if let Some(&e) = t1s.iter().find(|&&e| e != i && rules.same_protocol(&series[e], &series[i]) && acquired_before(&series[e], &series[i]) == Some(true)) {
                settled.push((i, format!("repeats the protocol of earlier T1 {} (taken as the pre-contrast run)", label(&series[e]))));
            }
        }
        for (i, why) in settled {
            judged[i].class = SeriesClass::T1PostContrast;
            judged[i].contrast = Contrast::Post;
            judged[i].reason = format!("{}; no contrast agent recorded, but {why}", judged[i].t1_basis.take().unwrap_or_default());
        }
    }

    let t1c = best_of(rules, series, &judged, SeriesClass::T1PostContrast);
    let t2 = best_of(rules, series, &judged, SeriesClass::T2);
    let verdicts = series
        .iter()
        .zip(judged)
        .enumerate()
        .map(|(i, (m, j))| {
            let chosen = Some(i) == t1c || Some(i) == t2;
            let reason = match (j.class, chosen) {
                (SeriesClass::T1PostContrast | SeriesClass::T2, true) => format!("chosen: {}; {}", j.reason, describe_geometry(rules, m)),
                (SeriesClass::T1PostContrast, false) => format!("not chosen: {}; series {} preferred ({})", j.reason, t1c.map(|b| label(&series[b])).unwrap_or_default(), t1c.map(|b| describe_geometry(rules, &series[b])).unwrap_or_default()),
                (SeriesClass::T2, false) => format!("not chosen: {}; series {} preferred ({})", j.reason, t2.map(|b| label(&series[b])).unwrap_or_default(), t2.map(|b| describe_geometry(rules, &series[b])).unwrap_or_default()),
                _ => format!("not used: {}", j.reason),
            };
            SeriesVerdict { series_uid: m.series_uid.clone(), description: m.description.clone(), class: j.class, chosen, reason }
        })
        .collect();
    SeriesSelection { t1c: t1c.map(|i| series[i].series_uid.clone()), t2: t2.map(|i| series[i].series_uid.clone()), verdicts }
}

fn describe_geometry(rules: &SeriesRules, m: &SeriesMetadata) -> String {
    let plane = Plane::of(m, rules.plane_min_cosine).map_or("unknown plane", Plane::name);
    let res = m.pixel_spacing.map_or_else(|| "unknown resolution".into(), |p| format!("{:.2}x{:.2} mm", p[0], p[1]));
    format!("{plane}, {} slices, {res}", m.slice_count)
}

/// The preferred series of a class: the preferred plane first, then most slices, then the
/// finest in-plane resolution, then the later acquisition (a repeat is usually the better one).
fn best_of(rules: &SeriesRules, series: &[SeriesMetadata], judged: &[Judged], class: SeriesClass) -> Option<usize> {
    let score = |m: &SeriesMetadata| {
        let plane_ok = rules.prefer.is_none_or(|p| Plane::of(m, rules.plane_min_cosine) == Some(p));
        let area = m.pixel_spacing.map_or(f64::INFINITY, |p| p[0] * p[1]);
        (plane_ok, m.slice_count, std::cmp::Reverse(OrdF64(area)), acquisition_key(m).0.map(OrdF64), m.series_number)
    };
    (0..series.len()).filter(|&i| judged[i].class == class).max_by(|&a, &b| score(&series[a]).cmp(&score(&series[b])))
}

/// A total order on the finite floats we compare (NaN sorts first, and never occurs here).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_compile() {
        SeriesRules::parse(DEFAULT_RULES, Path::new("config/series-rules.toml")).expect("shipped rules");
    }

    #[test]
    fn tm_text_becomes_seconds_of_day() {
        assert_eq!(seconds_of_day("101530.5"), Some(36930.5));
        assert_eq!(seconds_of_day("10:15:30"), Some(36930.0));
        assert_eq!(seconds_of_day("xx"), None);
    }
}
