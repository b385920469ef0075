//! DICOM fixtures for the imaging and DICOMweb tests: generated once per test binary by
//! `scripts/testdata/make_dicom_fixtures.py` (real sources: nilearn's MNI152 template, pydicom's
//! MR_small files, nibabel's Siemens mosaic) into a temporary folder, plus helpers that run the
//! independent oracles (dcm2niix, nibabel).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dicom_object::DefaultDicomObject;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub study_uid: String,
    pub series: Vec<FixtureSeries>,
    pub transfer_syntax_series: Vec<FixtureSeries>,
    pub siemens_mosaic: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FixtureSeries {
    pub name: String,
    pub series_uid: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub transfer_syntax: Option<String>,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub slices: usize,
    pub rows: usize,
    pub cols: usize,
    #[serde(default)]
    pub spacing: Option<[f64; 3]>,
    pub pixel_sum: Option<f64>,
    #[serde(default)]
    pub expected_class: Option<String>,
}

pub struct Fixtures {
    _dir: tempfile::TempDir,
    pub manifest: Manifest,
}

impl Fixtures {
    pub fn series(&self, name: &str) -> &FixtureSeries {
        self.manifest
            .series
            .iter()
            .chain(&self.manifest.transfer_syntax_series)
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("fixture series {name} is not in the manifest"))
    }

    /// Every DICOM file of the fixtures.
    pub fn all_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.manifest.series.iter().chain(&self.manifest.transfer_syntax_series).flat_map(|s| s.files.clone()).collect();
        files.push(self.manifest.siemens_mosaic.clone());
        files
    }
}

/// The workspace's root (where `Cargo.lock` is), whichever crate's tests include this file.
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().find(|d| d.join("Cargo.lock").is_file()).unwrap_or(&here).to_path_buf()
}

/// The tools venv's Python (pydicom, nibabel, nilearn, scipy).
pub fn tools_python() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let python = PathBuf::from(home).join(".cache/neurocds/tools-venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/bootstrap.sh to create the tools venv", python.display());
    python
}

/// The fixtures, generated on first use in this test binary.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = repo_root().join("scripts/testdata/make_dicom_fixtures.py");
        let out = Command::new(tools_python()).arg(&script).arg(dir.path()).output().expect("run the fixture script");
        assert!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(dir.path().join("manifest.json")).expect("manifest.json");
        let manifest = serde_json::from_str(&text).expect("manifest.json parses");
        Fixtures { _dir: dir, manifest }
    })
}

pub fn read_files(files: &[PathBuf]) -> Vec<DefaultDicomObject> {
    files.iter().map(|f| dicom_object::open_file(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))).collect()
}

/// A NIfTI volume as nibabel reads it (RAS affine, scaled values, x fastest).
pub struct Nifti {
    pub shape: [usize; 3],
    pub affine: [[f64; 4]; 4],
    pub inverse: [[f64; 4]; 4],
    pub data: Vec<f32>,
}

#[derive(Deserialize)]
struct NiftiHeader {
    shape: Vec<usize>,
    affine: [[f64; 4]; 4],
    inverse: [[f64; 4]; 4],
}

/// Converts a DICOM folder with Debian's dcm2niix and reads the result with nibabel.
pub fn dcm2niix(dicom_dir: &Path) -> Nifti {
    let out = tempfile::tempdir().expect("temp dir");
    let run = Command::new("dcm2niix").args(["-z", "n", "-f", "out", "-o"]).arg(out.path()).arg(dicom_dir).output().expect("dcm2niix is installed (apt-get install dcm2niix)");
    assert!(run.status.success(), "dcm2niix failed on {}:\n{}", dicom_dir.display(), String::from_utf8_lossy(&run.stdout));
    let nii = out.path().join("out.nii");
    assert!(nii.exists(), "dcm2niix wrote no out.nii for {}:\n{}", dicom_dir.display(), String::from_utf8_lossy(&run.stdout));
    let prefix = out.path().join("probe");
    let probe = repo_root().join("tests/support/dicom_nifti_probe.py");
    let read = Command::new(tools_python()).arg(&probe).arg(&nii).arg(&prefix).output().expect("run the NIfTI probe");
    assert!(read.status.success(), "NIfTI probe failed:\n{}", String::from_utf8_lossy(&read.stderr));
    let header: NiftiHeader = serde_json::from_str(&std::fs::read_to_string(prefix.with_extension("json")).expect("probe json")).expect("probe json parses");
    let bytes = std::fs::read(prefix.with_extension("f32")).expect("probe data");
    let data = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(header.shape.len(), 3, "dcm2niix wrote a {}-D image", header.shape.len());
    Nifti { shape: [header.shape[0], header.shape[1], header.shape[2]], affine: header.affine, inverse: header.inverse, data }
}

fn apply(m: &[[f64; 4]; 4], p: [f64; 3]) -> [f64; 3] {
    let mut o = [0.0; 3];
    for (r, v) in o.iter_mut().enumerate() {
        *v = m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3];
    }
    o
}

/// Checks that a volume and dcm2niix's NIfTI of the same files describe the same voxel grid
/// (every voxel centre of ours is a voxel centre of theirs, same number of voxels) and the
/// same values at every voxel. NIfTI is RAS, DICOM LPS: x and y change sign.
pub fn assert_same_as_nifti(volume: &neurocds_analysis::imaging::Volume, nifti: &Nifti, tolerance_mm: f64) {
    let dims = volume.dims();
    let mut ours = dims;
    let mut theirs = nifti.shape;
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "grid sizes differ: ours {dims:?} (i, j, k), dcm2niix {:?}", nifti.shape);
    let [nx, ny, _] = nifti.shape;
    let mut compared = 0usize;
    for ((k, j, i), value) in volume.data.indexed_iter() {
        let lps = volume.voxel_to_lps([i as f64, j as f64, k as f64]);
        let ras = [-lps[0], -lps[1], lps[2]];
        let v = apply(&nifti.inverse, ras);
        let idx = v.map(|x| x.round());
        let off = ((v[0] - idx[0]).powi(2) + (v[1] - idx[1]).powi(2) + (v[2] - idx[2]).powi(2)).sqrt();
        // Offsets are in voxels; turn the tolerance into voxels with the finest spacing.
        let finest = volume.spacing.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(off * finest <= tolerance_mm, "voxel ({i}, {j}, {k}) at LPS {lps:?} is {:.4} voxels off the dcm2niix grid", off);
        let [x, y, z] = [idx[0] as isize, idx[1] as isize, idx[2] as isize];
        assert!(x >= 0 && y >= 0 && z >= 0 && (x as usize) < nx && (y as usize) < ny && (z as usize) < nifti.shape[2], "voxel ({i}, {j}, {k}) falls outside the dcm2niix volume at {idx:?}");
        let theirs = nifti.data[x as usize + nx * (y as usize + ny * z as usize)];
        assert!((theirs - value).abs() <= 1e-3 * value.abs().max(1.0), "voxel ({i}, {j}, {k}): ours {value}, dcm2niix {theirs}");
        compared += 1;
    }
    assert_eq!(compared, nifti.data.len(), "not every dcm2niix voxel was compared");
}
