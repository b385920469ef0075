//! What the report reads about one labelled study, whichever kind of cohort it came from.

use std::borrow::Cow;

use crate::dataset::{Case, CaseInput, Split};

/// One labelled study as the report sees it: the truth, where it sits in the design, the
/// subgroup attributes it has, and its model input or the reason there is none.
#[derive(Debug, Clone)]
pub struct LabelledStudy<'a> {
    pub patient_id: String,
    pub split: Split,
    pub pcnsl: bool,
    /// `(attribute, value)` for the subgroup table; attributes a study lacks are left out.
    pub attributes: Vec<(&'static str, String)>,
    /// Generator ground truth, synthetic cohorts only: the imaging was drawn from the other
    /// diagnosis (see `Case::mimic`). `None` for a hospital's studies.
    pub mimic: Option<bool>,
    /// The prepared input, or why there is none: a stable key (counted in
    /// `preprocessing_abstentions`) and a detail naming the series or file.
    pub input: Result<Cow<'a, CaseInput>, (String, String)>,
}

impl<'a> LabelledStudy<'a> {
    /// A synthetic case, with the attributes the generator knows.
    pub fn from_case(c: &'a Case, split: Split) -> LabelledStudy<'a> {
        LabelledStudy {
            patient_id: c.patient_id.clone(),
            split,
            pcnsl: c.pcnsl,
            attributes: vec![
                ("age_band", age_band(c.age).to_string()),
                ("sex", c.sex.clone()),
                ("site", if c.external { "external".into() } else { "internal".into() }),
                ("vendor", c.vendor.clone()),
                ("field_strength", format!("{:.1}T", c.field_strength_t)),
            ],
            mimic: Some(c.mimic),
            input: match &c.input {
                Ok(i) => Ok(Cow::Borrowed(i)),
                Err(kind) => {
                    let key = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                    Err((key.clone(), key))
                }
            },
        }
    }
}

pub(crate) fn age_band(age: u32) -> &'static str {
    match age {
        0..50 => "<50",
        50..65 => "50-64",
        65..75 => "65-74",
        _ => ">=75",
    }
}
