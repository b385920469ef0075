//! Series recognition on realistic header sets (Siemens, GE, Philips; 2-D and 3-D; with and
//! without ContrastBolusAgent; FLAIR and T2* look-alikes) and on the site-editable rules file.
//!
//!     cargo test --release --test series_recognition

use std::path::Path;

use neurocds_analysis::imaging::{SeriesClass, SeriesMetadata, SeriesRules, SeriesRulesError, recognition_path, select_series};

/// The shipped rules file (the workspace's `config/`).
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/series-rules.toml");

const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
const SAGITTAL: [f64; 6] = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0];
const CORONAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];

/// One row of the table: a series header as a scanner writes it.
struct Row {
    vendor: &'static str,
    description: &'static str,
    tr: Option<f64>,
    te: Option<f64>,
    ti: Option<f64>,
    seq: &'static str,
    agent: &'static str,
    image_type: &'static str,
    acq: &'static str,
    iop: [f64; 6],
    slices: usize,
    expected: SeriesClass,
}

#[allow(clippy::too_many_arguments)]
fn row(vendor: &'static str, description: &'static str, tr: Option<f64>, te: Option<f64>, ti: Option<f64>, seq: &'static str, agent: &'static str, image_type: &'static str, acq: &'static str, iop: [f64; 6], slices: usize, expected: SeriesClass) -> Row {
    Row { vendor, description, tr, te, ti, seq, agent, image_type, acq, iop, slices, expected }
}

fn split(s: &str) -> Vec<String> {
    s.split('\\').filter(|v| !v.is_empty()).map(str::to_string).collect()
}

fn meta(uid: &str, r: &Row) -> SeriesMetadata {
    SeriesMetadata {
        series_uid: uid.to_string(),
        modality: Some("MR".into()),
        description: Some(r.description.into()),
        manufacturer: Some(r.vendor.into()),
        repetition_time_ms: r.tr,
        echo_time_ms: r.te,
        inversion_time_ms: r.ti,
        scanning_sequence: split(r.seq),
        contrast_bolus_agent: (!r.agent.is_empty()).then(|| r.agent.to_string()),
        image_type: split(if r.image_type.is_empty() { "ORIGINAL\\PRIMARY\\M\\ND" } else { r.image_type }),
        mr_acquisition_type: Some(r.acq.into()),
        image_orientation: Some(r.iop),
        pixel_spacing: Some([1.0, 1.0]),
        slice_count: r.slices,
        instance_count: r.slices,
        ..SeriesMetadata::default()
    }
}

use SeriesClass::*;

fn table() -> Vec<Row> {
    let (s, ge, ph) = ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems");
    vec![
        // Siemens
        row(s, "t1_mprage_sag_p2_iso", Some(2300.0), Some(2.32), Some(900.0), "GR\\IR", "", "", "3D", SAGITTAL, 192, T1Pre),
        row(s, "t1_mprage_tra_post", Some(2300.0), Some(2.32), Some(900.0), "GR\\IR", "", "", "3D", AXIAL, 176, T1PostContrast),
        row(s, "t1_se_tra", Some(550.0), Some(9.1), None, "SE", "Dotarem", "", "2D", AXIAL, 25, T1PostContrast),
        row(s, "t2_tse_tra", Some(5000.0), Some(98.0), None, "SE", "", "", "2D", AXIAL, 25, T2),
        row(s, "t2_tirm_tra_dark-fluid", Some(9000.0), Some(81.0), Some(2500.0), "SE\\IR", "", "", "2D", AXIAL, 25, Flair),
        row(s, "t2_space_sag_p2_iso", Some(3200.0), Some(409.0), None, "SE", "", "", "3D", SAGITTAL, 176, T2),
        row(s, "t2_space_dark-fluid_sag_p2_iso", Some(5000.0), Some(387.0), Some(1800.0), "SE\\IR", "", "", "3D", SAGITTAL, 176, Flair),
        row(s, "ep2d_diff_3scan_trace_p2", Some(5300.0), Some(84.0), None, "EP", "", "", "2D", AXIAL, 25, Dwi),
        row(s, "ep2d_diff_3scan_trace_p2_ADC", Some(5300.0), Some(84.0), None, "EP", "", "DERIVED\\PRIMARY\\DIFFUSION\\ADC", "2D", AXIAL, 25, Derived),
        row(s, "ep2d_perf", Some(1500.0), Some(30.0), None, "EP", "Gadovist", "", "2D", AXIAL, 1000, Other),
        row(s, "AAHead_Scout_32ch-head-coil", Some(3.2), Some(1.4), None, "GR", "", "", "3D", SAGITTAL, 128, Localizer),
        row(s, "t1_mprage_tra_post_MPR_cor", Some(2300.0), Some(2.32), Some(900.0), "GR\\IR", "", "DERIVED\\SECONDARY\\MPR", "3D", CORONAL, 60, Derived),
        row(s, "t1_mprage_tra_dis2d", Some(2300.0), Some(2.32), Some(900.0), "GR\\IR", "Gadovist", "DERIVED\\PRIMARY\\M\\DIS2D", "3D", AXIAL, 176, T1PostContrast),
        row(s, "t2_swi3d1r_tra", Some(27.0), Some(20.0), None, "GR", "", "", "3D", AXIAL, 72, Other),
        row(s, "t1_fl2d_tra", Some(250.0), Some(2.5), None, "GR", "", "", "2D", AXIAL, 25, T1Pre),
        row(s, "pd_tse_tra", Some(3000.0), Some(12.0), None, "SE", "", "", "2D", AXIAL, 25, Other),
        // GE
        row(ge, "AX T1 POST GAD", Some(600.0), Some(10.0), None, "SE", "", "", "2D", AXIAL, 24, T1PostContrast),
        row(ge, "AX T1 PRE", Some(600.0), Some(10.0), None, "SE", "", "", "2D", AXIAL, 24, T1Pre),
        row(ge, "AX T2 FRFSE", Some(4500.0), Some(102.0), None, "SE", "", "", "2D", AXIAL, 24, T2),
        row(ge, "AX T2 FLAIR", Some(9500.0), Some(140.0), Some(2375.0), "SE\\IR", "", "", "2D", AXIAL, 24, Flair),
        row(ge, "Ax T1 FLAIR", Some(2100.0), Some(8.7), Some(860.0), "SE\\IR", "", "", "2D", AXIAL, 24, T1Pre),
        row(ge, "Sag 3D BRAVO +C", Some(8.2), Some(3.2), Some(450.0), "GR\\IR", "", "", "3D", SAGITTAL, 176, T1PostContrast),
        row(ge, "AX T2* GRE", Some(650.0), Some(15.0), None, "GR", "", "", "2D", AXIAL, 24, Other),
        row(ge, "AX GRE", Some(650.0), Some(15.0), None, "GR", "", "", "2D", AXIAL, 24, Other),
        row(ge, "3-PLANE LOC", Some(5.0), Some(1.6), None, "GR", "", "", "2D", AXIAL, 15, Localizer),
        row(ge, "AX DWI 1000b", Some(8000.0), Some(80.0), None, "EP", "", "", "2D", AXIAL, 24, Dwi),
        row(ge, "Cor CUBE T2", Some(2500.0), Some(90.0), None, "SE", "", "", "3D", CORONAL, 200, T2),
        row(ge, "AX T1 FLAIR POST", Some(2100.0), Some(8.7), Some(860.0), "SE\\IR", "MultiHance", "", "2D", AXIAL, 24, T1PostContrast),
        // Philips
        row(ph, "T1W_3D_TFE+C", Some(8.1), Some(3.7), None, "GR", "", "", "3D", SAGITTAL, 180, T1PostContrast),
        row(ph, "sT1W_3D_TFE", Some(8.1), Some(3.7), None, "GR", "", "", "3D", SAGITTAL, 180, T1Pre),
        row(ph, "T2W_TSE", Some(3000.0), Some(80.0), None, "SE", "", "", "2D", AXIAL, 24, T2),
        row(ph, "T1W_SE", Some(500.0), Some(15.0), None, "SE", "none", "", "2D", AXIAL, 24, T1Pre),
        row(ph, "T2W_FLAIR", Some(11000.0), Some(125.0), Some(2800.0), "SE\\IR", "", "", "2D", AXIAL, 24, Flair),
        row(ph, "DWI_SENSE", Some(3000.0), Some(70.0), None, "EP", "", "", "2D", AXIAL, 24, Dwi),
        row(ph, "Survey_32ch_HeadCoil", Some(11.0), Some(4.6), None, "GR", "", "", "2D", AXIAL, 9, Localizer),
        // Timing missing from the header: the description decides.
        row(s, "AX T2", None, None, None, "", "", "", "2D", AXIAL, 24, T2),
        row(s, "AX T1 POST", None, None, None, "", "", "", "2D", AXIAL, 24, T1PostContrast),
        row(s, "unnamed", None, None, None, "", "", "", "2D", AXIAL, 24, Other),
    ]
}

#[test]
fn realistic_vendor_headers_get_the_expected_class_with_a_reason() {
    let rules = SeriesRules::default();
    let rows = table();
    let metas: Vec<SeriesMetadata> = rows.iter().enumerate().map(|(i, r)| meta(&format!("1.2.3.{i}"), r)).collect();
    // Judged one at a time, so that acquisition order plays no part here.
    let mut wrong = Vec::new();
    for (r, m) in rows.iter().zip(&metas) {
        let v = &select_series(&rules, std::slice::from_ref(m)).verdicts[0];
        assert!(!v.reason.trim().is_empty(), "{}: empty reason", r.description);
        if v.class != r.expected {
            wrong.push(format!("{} {:?}: expected {:?}, got {:?} ({})", r.vendor, r.description, r.expected, v.class, v.reason));
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
}

#[test]
fn non_mr_series_is_other_because_of_its_modality() {
    let m = SeriesMetadata { series_uid: "1.2".into(), modality: Some("SR".into()), slice_count: 1, ..SeriesMetadata::default() };
    let v = &select_series(&SeriesRules::default(), &[m]).verdicts[0];
    assert_eq!(v.class, Other);
    assert!(v.reason.contains("modality"), "{}", v.reason);
}

fn timed(uid: &str, r: Row, number: i64, time: &str) -> SeriesMetadata {
    SeriesMetadata { series_number: Some(number), acquisition_time: Some(time.into()), ..meta(uid, &r) }
}

#[test]
fn repeated_t1_protocol_without_contrast_keywords_is_post_contrast_the_second_time() {
    let t1 = || row("SIEMENS", "t1_mprage_tra", Some(2300.0), Some(2.32), Some(900.0), "GR\\IR", "", "", "3D", AXIAL, 176, T1Pre);
    let series = [timed("1.1", t1(), 2, "100500"), timed("1.2", t1(), 9, "103000")];
    let sel = select_series(&SeriesRules::default(), &series);
    assert_eq!(sel.verdicts[0].class, T1Pre, "{}", sel.verdicts[0].reason);
    assert_eq!(sel.verdicts[1].class, T1PostContrast, "{}", sel.verdicts[1].reason);
    assert!(sel.verdicts[1].reason.contains("repeats the protocol"), "{}", sel.verdicts[1].reason);
    assert_eq!(sel.t1c.as_deref(), Some("1.2"));
}

#[test]
fn ambiguous_t1_acquired_after_a_contrast_series_is_post_contrast() {
    let post = row("GE MEDICAL SYSTEMS", "Sag 3D BRAVO", Some(8.2), Some(3.2), Some(450.0), "GR\\IR", "Gadavist", "", "3D", SAGITTAL, 176, T1PostContrast);
    let after = row("GE MEDICAL SYSTEMS", "AX T1 SE", Some(600.0), Some(10.0), None, "SE", "", "", "2D", AXIAL, 24, T1PostContrast);
    let before = row("GE MEDICAL SYSTEMS", "AX T1 SE", Some(600.0), Some(10.0), None, "SE", "", "", "2D", AXIAL, 24, T1Pre);
    let series = [timed("2.1", before, 3, "090000"), timed("2.2", post, 5, "091500"), timed("2.3", after, 6, "092000")];
    let sel = select_series(&SeriesRules::default(), &series);
    let classes: Vec<_> = sel.verdicts.iter().map(|v| v.class).collect();
    assert_eq!(classes, [T1Pre, T1PostContrast, T1PostContrast], "{:#?}", sel.verdicts);
    assert!(sel.verdicts[2].reason.contains("acquired after post-contrast series"), "{}", sel.verdicts[2].reason);
}

#[test]
fn t1_acquired_after_a_perfusion_run_with_contrast_is_post_contrast() {
    let perfusion = row("SIEMENS", "ep2d_perf", Some(1500.0), Some(30.0), None, "EP", "Gadovist", "", "2D", AXIAL, 1000, Other);
    let t1 = row("SIEMENS", "t1_se_tra", Some(550.0), Some(9.1), None, "SE", "", "", "2D", AXIAL, 25, T1PostContrast);
    let sel = select_series(&SeriesRules::default(), &[timed("7.1", perfusion, 4, "101000"), timed("7.2", t1, 5, "101500")]);
    assert_eq!(sel.verdicts[1].class, T1PostContrast, "{}", sel.verdicts[1].reason);
    assert!(sel.verdicts[1].reason.contains("\"ep2d_perf\""), "{}", sel.verdicts[1].reason);
}

#[test]
fn acquisition_order_can_be_switched_off_by_the_site() {
    let text = std::fs::read_to_string(RULES).expect("rules file").replace("acquisition_order = true", "acquisition_order = false");
    let rules = SeriesRules::parse(&text, Path::new("site.toml")).expect("edited rules");
    let t1 = || row("SIEMENS", "t1_mprage_tra", Some(2300.0), Some(2.32), Some(900.0), "GR\\IR", "", "", "3D", AXIAL, 176, T1Pre);
    let sel = select_series(&rules, &[timed("1.1", t1(), 2, "100500"), timed("1.2", t1(), 9, "103000")]);
    assert!(sel.verdicts.iter().all(|v| v.class == T1Pre));
    assert_eq!(sel.t1c, None);
}

fn geo(uid: &str, description: &str, iop: [f64; 6], slices: usize, spacing: f64, post: bool) -> SeriesMetadata {
    let (tr, te, seq, expected) = if post { (2300.0, 2.3, "GR\\IR", T1PostContrast) } else { (5000.0, 100.0, "SE", T2) };
    let mut m = meta(uid, &row("SIEMENS", "x", Some(tr), Some(te), post.then_some(900.0), seq, if post { "Gadovist" } else { "" }, "", "3D", iop, slices, expected));
    m.description = Some(description.into());
    m.pixel_spacing = Some([spacing, spacing]);
    m
}

#[test]
fn axial_is_preferred_over_more_slices_in_another_plane() {
    let series = [geo("3.1", "t1_mprage_sag_post", SAGITTAL, 192, 1.0, true), geo("3.2", "t1_mprage_tra_post", AXIAL, 120, 1.0, true)];
    let sel = select_series(&SeriesRules::default(), &series);
    assert_eq!(sel.t1c.as_deref(), Some("3.2"));
    assert!(sel.verdicts[0].reason.starts_with("not chosen") && sel.verdicts[0].reason.contains("preferred"), "{}", sel.verdicts[0].reason);
    assert!(sel.verdicts[1].chosen && sel.verdicts[1].reason.starts_with("chosen"), "{}", sel.verdicts[1].reason);
}

#[test]
fn among_axial_series_more_slices_then_finer_resolution_wins() {
    let series = [
        geo("4.1", "t2_tse_tra", AXIAL, 25, 0.5, false),
        geo("4.2", "t2_tse_tra_thin", AXIAL, 50, 0.9, false),
        geo("4.3", "t2_tse_tra_thin_hr", AXIAL, 50, 0.45, false),
    ];
    let sel = select_series(&SeriesRules::default(), &series);
    assert_eq!(sel.t2.as_deref(), Some("4.3"));
    assert_eq!(sel.verdicts.iter().filter(|v| v.chosen).count(), 1);
}

#[test]
fn a_site_may_prefer_another_plane() {
    let text = std::fs::read_to_string(RULES).expect("rules file").replace("prefer_orientation = \"axial\"", "prefer_orientation = \"sagittal\"");
    let rules = SeriesRules::parse(&text, Path::new("site.toml")).expect("edited rules");
    let series = [geo("3.1", "t1_mprage_sag_post", SAGITTAL, 120, 1.0, true), geo("3.2", "t1_mprage_tra_post", AXIAL, 192, 1.0, true)];
    assert_eq!(select_series(&rules, &series).t1c.as_deref(), Some("3.1"));
}

#[test]
fn a_study_without_t1_post_contrast_selects_none_and_says_why_for_each_series() {
    let series = [geo("5.1", "t2_tse_tra", AXIAL, 25, 1.0, false), meta("5.2", &row("SIEMENS", "t2_tirm_tra_dark-fluid", Some(9000.0), Some(81.0), Some(2500.0), "SE\\IR", "", "", "2D", AXIAL, 25, Flair))];
    let sel = select_series(&SeriesRules::default(), &series);
    assert_eq!(sel.t1c, None);
    assert_eq!(sel.t2.as_deref(), Some("5.1"));
    assert!(sel.verdicts[1].reason.starts_with("not used") && sel.verdicts[1].reason.contains("inversion recovery"), "{}", sel.verdicts[1].reason);
}

#[test]
fn the_selection_serialises_for_the_audit_trail() {
    let sel = select_series(&SeriesRules::default(), &[geo("6.1", "t1_mprage_tra_post", AXIAL, 176, 1.0, true)]);
    let json = serde_json::to_value(&sel).expect("serialises");
    assert_eq!(json["t1c"], "6.1");
    assert_eq!(json["verdicts"][0]["class"], "t1-post-contrast");
    assert_eq!(json["verdicts"][0]["chosen"], true);
}

#[test]
fn the_shipped_file_loads_and_behaves_as_the_default() {
    let loaded = SeriesRules::load(RULES).expect("shipped rules load");
    let rows = table();
    let metas: Vec<SeriesMetadata> = rows.iter().enumerate().map(|(i, r)| meta(&format!("1.2.3.{i}"), r)).collect();
    assert_eq!(select_series(&loaded, &metas), select_series(&SeriesRules::default(), &metas));
}

#[test]
fn a_pattern_that_does_not_compile_is_refused_naming_its_key() {
    let text = std::fs::read_to_string(RULES).expect("rules file").replace("'dwi',", "'dwi(',");
    let err = SeriesRules::parse(&text, Path::new("site.toml")).expect_err("bad regex");
    assert!(matches!(&err, SeriesRulesError::Invalid { key, .. } if key == "dwi.description"), "{err}");
    assert!(err.to_string().contains("site.toml"), "{err}");
}

#[test]
fn an_inverted_range_is_refused_naming_its_key() {
    let text = std::fs::read_to_string(RULES).expect("rules file").replace("te_ms = [60.0, 700.0]", "te_ms = [700.0, 60.0]");
    let err = SeriesRules::parse(&text, Path::new("site.toml")).expect_err("inverted");
    assert!(matches!(&err, SeriesRulesError::Invalid { key, .. } if key == "t2.te_ms"), "{err}");
}

#[test]
fn an_unknown_key_is_refused_rather_than_ignored() {
    let text = std::fs::read_to_string(RULES).expect("rules file").replace("min_slices = 10", "min_slices = 10\nmin_slice = 12");
    let err = SeriesRules::parse(&text, Path::new("site.toml")).expect_err("typo");
    assert!(matches!(err, SeriesRulesError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("min_slice"), "{err}");
}

#[test]
fn a_missing_rules_file_is_refused_naming_the_path() {
    let err = SeriesRules::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/no-such-rules.toml")).expect_err("missing");
    assert!(matches!(err, SeriesRulesError::Read { .. }), "{err}");
    assert!(err.to_string().contains("no-such-rules.toml"), "{err}");
}

#[test]
fn each_chosen_series_names_how_it_was_recognised_for_model_monitoring() {
    let path = |series: &[SeriesMetadata], uid: &str| {
        let sel = select_series(&SeriesRules::default(), series);
        let v = sel.verdicts.iter().find(|v| v.series_uid == uid).expect("a verdict");
        recognition_path(v.class, &v.reason)
    };
    let agent = row("GE MEDICAL SYSTEMS", "Sag 3D BRAVO", Some(8.2), Some(3.2), Some(450.0), "GR\\IR", "Gadavist", "", "3D", SAGITTAL, 176, T1PostContrast);
    assert_eq!(path(&[meta("1", &agent)], "1"), "T1 timing + contrast agent");
    let keyword = row("SIEMENS", "t1_mprage_tra_post", Some(2300.0), Some(2.3), Some(900.0), "GR\\IR", "", "", "3D", AXIAL, 176, T1PostContrast);
    assert_eq!(path(&[meta("2", &keyword)], "2"), "T1 timing + post-contrast keyword");
    let t1 = || row("SIEMENS", "t1_mprage_tra", Some(2300.0), Some(2.32), Some(900.0), "GR\\IR", "", "", "3D", AXIAL, 176, T1Pre);
    assert_eq!(path(&[timed("3.1", t1(), 2, "100500"), timed("3.2", t1(), 9, "103000")], "3.2"), "T1 timing + acquisition order");
    let untimed = row("SIEMENS", "AX T1 POST", None, None, None, "", "", "", "2D", AXIAL, 24, T1PostContrast);
    assert_eq!(path(&[meta("4", &untimed)], "4"), "T1 description + post-contrast keyword");
    let t2 = row("SIEMENS", "t2_tse_tra", Some(5000.0), Some(100.0), None, "SE", "", "", "2D", AXIAL, 24, T2);
    assert_eq!(path(&[meta("5", &t2)], "5"), "T2 timing");
    let untimed_t2 = row("SIEMENS", "AX T2", None, None, None, "", "", "", "2D", AXIAL, 24, T2);
    assert_eq!(path(&[meta("6", &untimed_t2)], "6"), "T2 description");
}
