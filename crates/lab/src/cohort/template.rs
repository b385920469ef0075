//! Real brains for the generator: grey and white matter maps of a brain template, which replace
//! the phantom's analytic cortex, ventricles and deep grey matter inside the phantom's head.
//!
//! Two templates are converted by `scripts/templates.py` into `$NEUROCDS_CACHE/templates`:
//! `colin27` (a single subject; used in training) and `mni152` (a population average; never used
//! in training or tuning: the external-anatomy test set). Why a real brain matters and what the
//! hybrid keeps from the phantom is in `ASSUMPTIONS.md`, "More than one anatomy".

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::CohortError;

/// The brain templates the generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateName {
    Colin27,
    Mni152,
}

impl TemplateName {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateName::Colin27 => "colin27",
            TemplateName::Mni152 => "mni152",
        }
    }
}

/// Where a case's brain comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AnatomySource {
    /// The procedural phantom (`anatomy.rs`).
    Phantom,
    /// A real brain template inside the phantom's head.
    Template(Arc<TemplateBrain>),
}

impl AnatomySource {
    pub fn name(&self) -> &'static str {
        match self {
            AnatomySource::Phantom => "phantom",
            AnatomySource::Template(t) => t.name.as_str(),
        }
    }

    /// Parses `phantom`, `colin27` or `mni152`, loading a template from `dir`.
    pub fn load(name: &str, dir: &Path) -> Result<Self, CohortError> {
        match name {
            "phantom" => Ok(AnatomySource::Phantom),
            "colin27" => Ok(AnatomySource::Template(Arc::new(TemplateBrain::load(TemplateName::Colin27, dir)?))),
            "mni152" => Ok(AnatomySource::Template(Arc::new(TemplateBrain::load(TemplateName::Mni152, dir)?))),
            other => Err(CohortError::InvalidSpec(format!("unknown anatomy {other:?} (phantom, colin27 or mni152)"))),
        }
    }
}

/// Parses a comma-separated list of anatomies such as `phantom,colin27`, loading templates
/// from [`default_dir`].
pub fn parse_anatomies(list: &str) -> Result<Vec<AnatomySource>, CohortError> {
    let dir = default_dir();
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(AnatomySource::load(name, &dir)?);
    }
    if out.is_empty() {
        return Err(CohortError::InvalidSpec(format!("no anatomy in {list:?}")));
    }
    Ok(out)
}

/// Where the converted templates live unless told otherwise: `$NEUROCDS_TEMPLATES`, else
/// `$NEUROCDS_CACHE/templates`, else `~/.cache/neurocds/templates`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEUROCDS_TEMPLATES") {
        return PathBuf::from(dir);
    }
    if let Some(cache) = std::env::var_os("NEUROCDS_CACHE") {
        return PathBuf::from(cache).join("templates");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/neurocds/templates")
}

/// One template's tissue maps on a 1 mm LPS grid centred on the brain's bounding box.
pub struct TemplateBrain {
    pub name: TemplateName,
    dims: [usize; 3],
    /// LPS position (mm, relative to the brain's centre) of voxel (0, 0, 0).
    origin: [f64; 3],
    /// Half extents of the brain's bounding box (LR, AP, SI), mm.
    pub half_extent: [f64; 3],
    wm: Vec<u8>,
    gm: Vec<u8>,
}

impl fmt::Debug for TemplateBrain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateBrain").field("name", &self.name).field("dims", &self.dims).finish_non_exhaustive()
    }
}

/// Two templates are the same if they have the same name (the maps are derived from it).
impl PartialEq for TemplateBrain {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

const MAGIC: &[u8; 8] = b"NCDTMPL1";
const HEADER: usize = 8 + 12 + 12 + 12;

impl TemplateBrain {
    /// Reads `dir/<name>.ncdt` (written by `scripts/templates.py`).
    pub fn load(name: TemplateName, dir: &Path) -> Result<Self, CohortError> {
        let path = dir.join(format!("{}.ncdt", name.as_str()));
        let bytes = std::fs::read(&path).map_err(|e| {
            CohortError::InvalidSpec(format!("cannot read the {} template at {} ({e}); `scripts/bootstrap.sh` makes it", name.as_str(), path.display()))
        })?;
        Self::parse(name, &bytes).map_err(|why| CohortError::InvalidSpec(format!("{} is not a template map: {why}", path.display())))
    }

    fn parse(name: TemplateName, bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err("bad magic".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        let f32_at = |o: usize| f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as f64;
        let dims = [u32_at(8), u32_at(12), u32_at(16)];
        if dims.iter().any(|&d| d < 2 || d > 1024) {
            return Err(format!("implausible dimensions {dims:?}"));
        }
        let origin = [f32_at(20), f32_at(24), f32_at(28)];
        let half_extent = [f32_at(32), f32_at(36), f32_at(40)];
        if half_extent.iter().any(|&h| !(20.0..=150.0).contains(&h)) {
            return Err(format!("implausible brain extent {half_extent:?}"));
        }
        let n = dims[0] * dims[1] * dims[2];
        if bytes.len() != HEADER + 2 * n {
            return Err(format!("{} bytes, expected {}", bytes.len(), HEADER + 2 * n));
        }
        Ok(Self {
            name,
            dims,
            origin,
            half_extent,
            wm: bytes[HEADER..HEADER + n].to_vec(),
            gm: bytes[HEADER + n..].to_vec(),
        })
    }

    /// White and grey matter fractions at `p` (mm from the brain's centre, LPS), trilinear;
    /// zero outside the maps.
    #[inline]
    pub fn sample(&self, p: [f64; 3]) -> (f32, f32) {
        let mut base = [0usize; 3];
        let mut frac = [0f32; 3];
        for a in 0..3 {
            let u = p[a] - self.origin[a];
            if u < 0.0 || u >= (self.dims[a] - 1) as f64 {
                return (0.0, 0.0);
            }
            let i = u.floor();
            base[a] = i as usize;
            frac[a] = (u - i) as f32;
        }
        let [nx, ny, _] = self.dims;
        let at = |map: &[u8], dx: usize, dy: usize, dz: usize| -> f32 {
            map[(base[2] + dz) * nx * ny + (base[1] + dy) * nx + base[0] + dx] as f32
        };
        let interp = |map: &[u8]| -> f32 {
            let mut acc = 0.0;
            for dz in 0..2 {
                let wz = if dz == 0 { 1.0 - frac[2] } else { frac[2] };
                for dy in 0..2 {
                    let wy = if dy == 0 { 1.0 - frac[1] } else { frac[1] };
                    for dx in 0..2 {
                        let wx = if dx == 0 { 1.0 - frac[0] } else { frac[0] };
                        acc += wz * wy * wx * at(map, dx, dy, dz);
                    }
                }
            }
            acc / 255.0
        };
        (interp(&self.wm), interp(&self.gm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(wm: u8, gm: u8) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for d in [4u32, 4, 4] {
            b.extend(d.to_le_bytes());
        }
        for o in [-1.5f32, -1.5, -1.5, 30.0, 30.0, 30.0] {
            b.extend(o.to_le_bytes());
        }
        b.extend(std::iter::repeat_n(wm, 64));
        b.extend(std::iter::repeat_n(gm, 64));
        b
    }

    #[test]
    fn samples_inside_and_nothing_outside() {
        let t = TemplateBrain::parse(TemplateName::Colin27, &tiny(255, 0)).unwrap();
        assert_eq!(t.sample([0.0, 0.2, -0.7]), (1.0, 0.0));
        assert_eq!(t.sample([5.0, 0.0, 0.0]), (0.0, 0.0));
    }

    #[test]
    fn refuses_truncated_or_foreign_files() {
        let mut b = tiny(1, 1);
        b.pop();
        assert!(TemplateBrain::parse(TemplateName::Mni152, &b).is_err());
        assert!(TemplateBrain::parse(TemplateName::Mni152, b"NIFTI...").is_err());
    }
}
