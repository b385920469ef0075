//! Applying the rules: each series judged on its own header, then acquisition order settling
//! T1s whose contrast state their header leaves open, then the best T1c and T2 chosen.

use super::{
    metadata::{Plane, SeriesClass, SeriesMetadata, SeriesSelection, SeriesVerdict},
    rules::SeriesRules,
};

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

/// Which series' verdicts the headers of all their instances could change, given `series` as
/// one instance each describes them (a QIDO-RS answer with
/// [`crate::imaging::dicom_json::RECOGNITION_FIELDS`]). Those need their full metadata (or
/// their instances) before a choice is final; the others are settled by protocol fields that
/// every instance of a series repeats (description, ImageType, ScanningSequence, TR/TE/TI).
///
/// A series needs all its instances when:
/// - it may be a T1 or a T2 (the choice compares slice counts and acquisition times, and a
///   contrast agent recorded in any instance makes a T1 post-contrast);
/// - it would be a T1 or a T2 but for its slice count (frames may be more than instances);
/// - it was judged without TR and TE (the archive may not have returned them: enhanced MR keeps
///   them in functional groups);
/// - it records a contrast agent (acquisition order counts it).
///
/// What is left unread errs on the safe side only: a settled series (a FLAIR, a perfusion run)
/// whose agent or earliest acquisition time sits in another instance can only make fewer T1s
/// count as post-contrast by acquisition order — a missing T1c abstains, it never advises.
pub fn needs_all_instances(rules: &SeriesRules, series: &[SeriesMetadata]) -> Vec<bool> {
    series
        .iter()
        .map(|m| {
            // Another modality (a structured report, a presentation state) is settled by the
            // modality alone, which the search always gives.
            let modality = m.modality.as_deref().unwrap_or("").trim().to_ascii_uppercase();
            if m.modality.is_some() && !rules.modalities.contains(&modality) {
                return false;
            }
            // Judged as if it had the slices a volume needs: frames may be more than instances.
            let counted = SeriesMetadata { slice_count: m.slice_count.max(rules.min_slices), ..m.clone() };
            matches!(rules.judge(&counted).class, SeriesClass::T1PostContrast | SeriesClass::T1Pre | SeriesClass::T2)
                || m.repetition_time_ms.is_none()
                || m.echo_time_ms.is_none()
                || rules.agent_given(m).is_some()
        })
        .collect()
}

/// How a chosen series was recognised, as a label from a closed set (model monitoring counts
/// them: a site whose scanners stop recording the contrast agent shows up as a shift from
/// `T1 timing + contrast agent` to `T1 timing + acquisition order`). Read from the verdict's
/// reason, whose wording this file writes; `other` for any reason it did not.
pub fn recognition_path(class: SeriesClass, reason: &str) -> &'static str {
    let timing = !reason.contains("no TR/TE");
    match class {
        SeriesClass::T2 if timing => "T2 timing",
        SeriesClass::T2 => "T2 description",
        SeriesClass::T1PostContrast => {
            let by_agent = reason.contains("ContrastBolusAgent");
            let by_order = reason.contains("acquired after post-contrast series") || reason.contains("repeats the protocol of earlier T1");
            let by_keyword = reason.contains("description matches post-contrast pattern");
            match (timing, by_agent, by_keyword, by_order) {
                (true, true, ..) => "T1 timing + contrast agent",
                (true, _, true, _) => "T1 timing + post-contrast keyword",
                (true, _, _, true) => "T1 timing + acquisition order",
                (false, true, ..) => "T1 description + contrast agent",
                (false, _, true, _) => "T1 description + post-contrast keyword",
                (false, _, _, true) => "T1 description + acquisition order",
                _ => "other",
            }
        }
        _ => "other",
    }
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
    fn tm_text_becomes_seconds_of_day() {
        assert_eq!(seconds_of_day("101530.5"), Some(36930.5));
        assert_eq!(seconds_of_day("10:15:30"), Some(36930.0));
        assert_eq!(seconds_of_day("xx"), None);
    }

    /// A header as a QIDO-RS answer with `includefield` would give it.
    fn series(uid: &str, desc: &str, tr: f64, te: f64, agent: Option<&str>) -> SeriesMetadata {
        SeriesMetadata {
            series_uid: uid.into(),
            modality: Some("MR".into()),
            description: Some(desc.into()),
            repetition_time_ms: Some(tr),
            echo_time_ms: Some(te),
            scanning_sequence: vec!["SE".into()],
            image_type: vec!["ORIGINAL".into(), "PRIMARY".into()],
            image_orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            pixel_spacing: Some([0.9, 0.9]),
            contrast_bolus_agent: agent.map(Into::into),
            instance_count: 26,
            slice_count: 26,
            ..SeriesMetadata::default()
        }
    }

    #[test]
    fn only_series_that_could_be_chosen_need_all_their_instances() {
        let rules = SeriesRules::default();
        let mut localizer = series("1", "LOC", 6.0, 2.0, None);
        localizer.image_type.push("LOCALIZER".into());
        localizer.slice_count = 3;
        localizer.instance_count = 3;
        let mut flair = series("5", "AX FLAIR", 8800.0, 120.0, None);
        flair.inversion_time_ms = Some(2200.0);
        flair.scanning_sequence.push("IR".into());
        let study = [localizer, series("2", "AX T1", 480.0, 10.0, None), series("3", "AX T1 POST", 480.0, 10.0, Some("GADAVIST")), series("4", "AX T2", 4800.0, 100.0, None), flair];
        let needs = needs_all_instances(&rules, &study);
        assert_eq!(needs, [false, true, true, true, false]);
    }

    #[test]
    fn a_t1_or_t2_with_too_few_instances_needs_all_of_them_for_its_frames() {
        let mut enhanced = series("1", "AX T2", 4800.0, 100.0, None);
        (enhanced.instance_count, enhanced.slice_count) = (1, 1);
        assert_eq!(needs_all_instances(&SeriesRules::default(), &[enhanced]), [true]);
    }

    #[test]
    fn a_series_of_another_modality_is_settled_by_the_search() {
        let mut report = series("9", "Dose report", 0.0, 0.0, None);
        (report.modality, report.repetition_time_ms, report.echo_time_ms) = (Some("SR".into()), None, None);
        let mut unknown = report.clone();
        unknown.modality = None;
        assert_eq!(needs_all_instances(&SeriesRules::default(), &[report, unknown]), [false, true]);
    }

    #[test]
    fn a_series_judged_without_timing_needs_all_its_instances() {
        let rules = SeriesRules::default();
        let mut enhanced = series("1", "AX FLAIR", 0.0, 0.0, None);
        enhanced.repetition_time_ms = None;
        enhanced.echo_time_ms = None;
        assert_eq!(needs_all_instances(&rules, &[enhanced]), [true]);
    }
}
