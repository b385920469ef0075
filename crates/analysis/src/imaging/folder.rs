//! Studies read from a folder of DICOM files instead of a PACS, for offline validation
//! (`neurocds-lab evaluate --cohort DIR`).
//!
//! Any layout is accepted: the folder is walked recursively, every file that carries the DICOM
//! Part-10 preamble (`DICM` at byte 128) is indexed by StudyInstanceUID and SeriesInstanceUID
//! from its header alone, and other files (a labels CSV, notes) are ignored. A study is then
//! read the way the service reads one from DICOMweb ([`crate::pipeline`]): the headers of all
//! its series go through the same DICOM JSON reader and the same recognition rules, and only the
//! chosen T1c and T2 are decoded and assembled with [`Volume::assemble`].

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use rayon::prelude::*;

use super::{SeriesRules, SeriesSelection, Volume, VolumeError, dicom_json, select_series};

/// Series files of one study: SeriesInstanceUID → files.
pub type StudyFiles = BTreeMap<String, Vec<PathBuf>>;

/// What a folder holds: StudyInstanceUID → its series, plus the files that looked like DICOM
/// but could not be read (they belong to no study, so each is named here).
#[derive(Debug, Default)]
pub struct DicomFolder {
    pub studies: BTreeMap<String, StudyFiles>,
    pub unreadable: Vec<(PathBuf, String)>,
    /// Files without the DICOM preamble (CSV, JSON, text), skipped.
    pub other_files: usize,
}

/// The folder itself could not be walked.
#[derive(Debug, thiserror::Error)]
#[error("cannot read folder {path}: {source}")]
pub struct FolderError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Why a labelled study could not be turned into a T1c and a T2 volume. [`StudyError::kind`] is
/// the stable key under which `evaluate` counts it.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("no DICOM file of this study is in the folder")]
    NotFound,
    #[error("series missing: {0}")]
    SeriesMissing(&'static str),
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("series {series_uid}: header cannot be read as DICOM JSON: {reason}")]
    Header { series_uid: String, reason: String },
    #[error(transparent)]
    Assembly(#[from] VolumeError),
}

impl StudyError {
    pub fn kind(&self) -> &'static str {
        match self {
            StudyError::NotFound => "study_not_found",
            // The same key preprocessing uses for an absent series.
            StudyError::SeriesMissing(_) => "series_missing",
            StudyError::Unreadable { .. } | StudyError::Header { .. } => "unreadable_file",
            StudyError::Assembly(_) => "volume_assembly",
        }
    }
}

/// The two volumes the model reads, and the verdict on every series of the study.
#[derive(Debug)]
pub struct StudyVolumes {
    pub selection: SeriesSelection,
    pub t1c: Volume,
    pub t2: Volume,
}

/// Whether a file starts with the Part-10 preamble and `DICM` magic.
fn has_dicom_preamble(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..132] == b"DICM"
}

/// Every regular file under `dir`, recursively; symbolic links to folders are not followed
/// (they could loop).
fn walk(dir: &Path) -> Result<Vec<PathBuf>, FolderError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| FolderError { path: d.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| FolderError { path: d.clone(), source })?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|source| FolderError { path: path.clone(), source })?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a header only (up to the pixel data).
fn open_header(path: &Path) -> Result<DefaultDicomObject, String> {
    OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).map_err(|e| e.to_string())
}

fn uid(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let s = obj.element_opt(tag).ok().flatten()?.to_str().ok()?.trim_end_matches(['\0', ' ']).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Indexes every DICOM file under `dir` by study and series (headers only, in parallel).
pub fn scan(dir: &Path) -> Result<DicomFolder, FolderError> {
    let files = walk(dir)?;
    enum Found {
        Instance { study: String, series: String, path: PathBuf },
        Unreadable(PathBuf, String),
        Other,
    }
    let found: Vec<Found> = files
        .into_par_iter()
        .map(|path| {
            if !has_dicom_preamble(&path) {
                return Found::Other;
            }
            match open_header(&path) {
                Err(reason) => Found::Unreadable(path, reason),
                Ok(obj) => match (uid(&obj, tags::STUDY_INSTANCE_UID), uid(&obj, tags::SERIES_INSTANCE_UID)) {
                    (Some(study), Some(series)) => Found::Instance { study, series, path },
                    _ => Found::Unreadable(path, "no StudyInstanceUID or SeriesInstanceUID".into()),
                },
            }
        })
        .collect();
    let mut folder = DicomFolder::default();
    for f in found {
        match f {
            Found::Instance { study, series, path } => folder.studies.entry(study).or_default().entry(series).or_default().push(path),
            Found::Unreadable(path, reason) => folder.unreadable.push((path, reason)),
            Found::Other => folder.other_files += 1,
        }
    }
    Ok(folder)
}

/// Recognises the series of one study from their headers and assembles the chosen T1c and T2.
pub fn load_study(series: &StudyFiles, rules: &SeriesRules) -> Result<StudyVolumes, StudyError> {
    if series.is_empty() {
        return Err(StudyError::NotFound);
    }
    let mut metadata = Vec::with_capacity(series.len());
    for (series_uid, files) in series {
        let headers = files
            .iter()
            .map(|path| open_header(path).map_err(|reason| StudyError::Unreadable { path: path.clone(), reason }))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&dicom_object::InMemDicomObject> = headers.iter().map(|h| &**h).collect();
        let meta = dicom_json::from_objects(series_uid, &serde_json::Value::Object(Default::default()), &refs).map_err(|e| StudyError::Header { series_uid: series_uid.clone(), reason: e.to_string() })?;
        metadata.push(meta);
    }
    let selection = select_series(rules, &metadata);
    let (Some(t1c_uid), Some(t2_uid)) = (selection.t1c.clone(), selection.t2.clone()) else {
        let missing = if selection.t1c.is_none() { "no T1 post-contrast series" } else { "no T2-weighted series" };
        return Err(StudyError::SeriesMissing(missing));
    };
    let t1c = assemble(&t1c_uid, series)?;
    let t2 = assemble(&t2_uid, series)?;
    Ok(StudyVolumes { selection, t1c, t2 })
}

fn assemble(series_uid: &str, series: &StudyFiles) -> Result<Volume, StudyError> {
    let files = series.get(series_uid).map(Vec::as_slice).unwrap_or_default();
    let objects = files
        .iter()
        .map(|path| dicom_object::open_file(path).map_err(|e| StudyError::Unreadable { path: path.clone(), reason: e.to_string() }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Volume::assemble(series_uid, &objects)?)
}
