//! The labels CSV of a DICOM-folder cohort (`neurocds-lab evaluate --cohort DIR [--labels FILE]`).
//!
//! ```text
//! study_uid,label,patient_id,age,sex,site,vendor,acquired,split
//! 1.2.826.0.1.3680043.10.1.7,gbm,P0001,67,M,internal,siemens,2021-03-14,
//! 1.2.826.0.1.3680043.10.1.8,PCNSL,P0002,71,F,external,ge,2022-11-02,
//! ```
//!
//! A header row names the columns (any order, case-insensitive; unknown columns are ignored).
//! Required: `study_uid` and `label` (`gbm`/`glioblastoma` or `pcnsl`/`lymphoma`, any case).
//! Optional, each may be empty in a row: `patient_id` (shown in the report; else the study UID),
//! `age` (years, whole number), `sex`, `site`, `vendor`, `acquired` (YYYY-MM-DD) — the subgroup
//! table; and `split` (`development`, `validation`, `prospective` or `external`). Without a split,
//! `site` = `internal` means prospective, and every other study (`external`, any other site
//! name, or none) is external: a model validated on a hospital's own studies has never seen them.
//! Fields may be quoted (RFC 4180). Every error names the file, the line and the column.

use std::path::{Path, PathBuf};

use time::{Date, macros::format_description};

use crate::dataset::Split;

/// One labelled study.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    /// 1-based line of the file, for messages.
    pub line: usize,
    pub study_uid: String,
    pub pcnsl: bool,
    pub patient_id: Option<String>,
    pub age: Option<u32>,
    pub sex: Option<String>,
    pub site: Option<String>,
    pub vendor: Option<String>,
    pub acquired: Option<Date>,
    pub split: Option<Split>,
}

impl LabelRow {
    /// Where the study sits in the report: its `split`, else by `site` (see the module docs).
    pub fn effective_split(&self) -> Split {
        match (self.split, self.site.as_deref()) {
            (Some(s), _) => s,
            (None, Some(site)) if site.eq_ignore_ascii_case("internal") => Split::Prospective,
            _ => Split::External,
        }
    }

    /// Subgroup attributes present in this row, in report order.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(age) = self.age {
            out.push(("age_band", super::study::age_band(age).to_string()));
        }
        for (name, value) in [("sex", &self.sex), ("site", &self.site), ("vendor", &self.vendor)] {
            if let Some(v) = value {
                out.push((name, v.clone()));
            }
        }
        if let Some(d) = self.acquired {
            out.push(("acquired_year", d.year().to_string()));
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("cannot read labels {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("labels {path}: line {line}: {reason}")]
    Row { path: PathBuf, line: usize, reason: String },
    #[error("labels {path}: missing required column `{column}` (the header has: {header})")]
    MissingColumn { path: PathBuf, column: &'static str, header: String },
    #[error("labels {path}: no labelled study")]
    Empty { path: PathBuf },
}

/// Reads and checks a labels file.
pub fn read(path: &Path) -> Result<Vec<LabelRow>, LabelsError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Read { path: path.to_owned(), source })?;
    parse(&text, path)
}

/// Parses labels CSV text; `path` only names the source in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<LabelRow>, LabelsError> {
    let row_err = |line: usize, reason: String| LabelsError::Row { path: path.to_owned(), line, reason };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = records(text).map_err(|(line, reason)| row_err(line, reason))?.into_iter().filter(|(_, f)| !(f.len() == 1 && f[0].trim().is_empty()));
    let Some((_, header)) = lines.next() else {
        return Err(LabelsError::Empty { path: path.to_owned() });
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let required = |name: &'static str| col(name).ok_or_else(|| LabelsError::MissingColumn { path: path.to_owned(), column: name, header: header.join(",") });
    let (c_uid, c_label) = (required("study_uid")?, required("label")?);
    let [c_patient, c_age, c_sex, c_site, c_vendor, c_acquired, c_split] = ["patient_id", "age", "sex", "site", "vendor", "acquired", "split"].map(col);

    let mut rows: Vec<LabelRow> = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (line, fields) in lines {
        if fields.len() != header.len() {
            return Err(row_err(line, format!("{} fields where the header has {} columns", fields.len(), header.len())));
        }
        let get = |c: Option<usize>| c.map(|c| fields[c].trim()).filter(|s| !s.is_empty()).map(str::to_string);
        let column_err = |column: &str, reason: String| row_err(line, format!("column `{column}`: {reason}"));
        let study_uid = get(Some(c_uid)).ok_or_else(|| column_err("study_uid", "empty".into()))?;
        if let Some(first) = seen.insert(study_uid.clone(), line) {
            return Err(column_err("study_uid", format!("{study_uid} is already labelled on line {first}")));
        }
        let label = get(Some(c_label)).unwrap_or_default();
        let pcnsl = match label.to_ascii_lowercase().as_str() {
            "gbm" | "glioblastoma" => false,
            "pcnsl" | "lymphoma" => true,
            _ => return Err(column_err("label", format!("{label:?} is not gbm, glioblastoma, pcnsl or lymphoma"))),
        };
        let age = get(c_age).map(|a| a.parse::<u32>().map_err(|_| column_err("age", format!("{a:?} is not a whole number of years")))).transpose()?;
        let acquired = get(c_acquired)
            .map(|d| Date::parse(&d, format_description!("[year]-[month]-[day]")).map_err(|_| column_err("acquired", format!("{d:?} is not a date (YYYY-MM-DD)"))))
            .transpose()?;
        let split = get(c_split)
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "development" => Ok(Split::Development),
                "validation" => Ok(Split::Validation),
                "prospective" => Ok(Split::Prospective),
                "external" => Ok(Split::External),
                _ => Err(column_err("split", format!("{s:?} is not development, validation, prospective or external"))),
            })
            .transpose()?;
        rows.push(LabelRow { line, study_uid, pcnsl, patient_id: get(c_patient), age, sex: get(c_sex), site: get(c_site), vendor: get(c_vendor), acquired, split });
    }
    if rows.is_empty() {
        return Err(LabelsError::Empty { path: path.to_owned() });
    }
    Ok(rows)
}

/// RFC 4180 records with the 1-based line each starts on. A quoted field may hold commas,
/// doubled quotes and line breaks.
fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, (usize, String)> {
    let mut out = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut start, mut quoted, mut was_quoted) = (1, 1, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, '\n') => {
                line += 1;
                field.push('\n');
            }
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '\r') => {}
            (false, '\n') => {
                fields.push(std::mem::take(&mut field));
                out.push((start, std::mem::take(&mut fields)));
                was_quoted = false;
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err((start, "a quoted field is not closed".into()));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_keep_commas_and_quotes() {
        let r = records("a,\"b, \"\"c\"\"\",d\r\ne,f,g\n").expect("valid CSV");
        assert_eq!(r, vec![(1, vec!["a".into(), "b, \"c\"".into(), "d".into()]), (2, vec!["e".into(), "f".into(), "g".into()])]);
    }

    #[test]
    fn labels_are_case_insensitive_and_lymphoma_counts_as_pcnsl() {
        let rows = parse("Study_UID,LABEL\n1.2,GBM\n1.3,Lymphoma\n1.4,pcnsl\n", Path::new("x.csv")).expect("valid labels");
        assert_eq!(rows.iter().map(|r| r.pcnsl).collect::<Vec<_>>(), [false, true, true]);
        assert_eq!(rows[0].effective_split(), Split::External);
    }
}
