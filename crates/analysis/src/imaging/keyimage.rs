//! Key images: the axial T1c and T2 slices through the lesion centre, with the enhancing lesion's
//! outline drawn in red, as PNGs a clinician can check the finding against.
//!
//! Images are in radiological display: patient's right on the image's left, anterior at the top
//! (LPS: column index grows with x towards the left, row index with y towards posterior).

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use super::geometry::{Affine, Sampler};
use super::volume::Volume;

/// Longest side of a key image, in pixels.
const MAX_SIDE: usize = 256;
const OUTLINE: [u8; 3] = [255, 40, 40];

/// PNG bytes (8-bit RGB) of the two key images; empty when none could be drawn.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyImages {
    #[serde(with = "base64_bytes")]
    pub t1c_png: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub t2_png: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Draws both key images. `lesion` lives on the preprocessing working grid; `grid_from_lps`
/// maps patient coordinates to that grid's `(a, b, c)` index.
pub(crate) fn render(
    t1c: &Volume,
    t2: &Volume,
    a1: &Affine,
    a1_inv: &Affine,
    a2_inv: &Affine,
    lesion: &Array3<bool>,
    grid_from_lps: &Affine,
    centre: [f64; 3],
) -> KeyImages {
    // The axial field of view: the T1c volume's extent in x and y.
    let (nk, nj, ni) = t1c.data.dim();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for corner in 0..8 {
        let pick = |bit: usize, n: usize| if corner >> bit & 1 == 1 { (n - 1) as f64 } else { 0.0 };
        let p = a1.apply([pick(0, ni), pick(1, nj), pick(2, nk)]);
        (x0, x1, y0, y1) = (x0.min(p[0]), x1.max(p[0]), y0.min(p[1]), y1.max(p[1]));
    }
    let px = ((x1 - x0).max(y1 - y0) / MAX_SIDE as f64).max(0.5);
    let width = (((x1 - x0) / px).ceil() as usize).clamp(1, MAX_SIDE);
    let height = (((y1 - y0) / px).ceil() as usize).clamp(1, MAX_SIDE);
    let point = |r: usize, c: usize| [x0 + (c as f64 + 0.5) * px, y0 + (r as f64 + 0.5) * px, centre[2]];

    let (gk, gj, gi) = lesion.dim();
    let in_lesion = |p: [f64; 3]| {
        let g = grid_from_lps.apply(p);
        let idx = |x: f64, n: usize| (x >= -0.5 && x < n as f64 - 0.5).then(|| x.round() as usize);
        match (idx(g[0], gi), idx(g[1], gj), idx(g[2], gk)) {
            (Some(i), Some(j), Some(k)) => lesion[[k, j, i]],
            _ => false,
        }
    };
    let mask: Vec<bool> = (0..height * width).map(|n| in_lesion(point(n / width, n % width))).collect();
    let outline: Vec<bool> = (0..height * width)
        .map(|n| {
            let (r, c) = (n / width, n % width);
            mask[n] && (r == 0 || c == 0 || r + 1 == height || c + 1 == width || !mask[n - 1] || !mask[n + 1] || !mask[n - width] || !mask[n + width])
        })
        .collect();

    let plane = |data: &Array3<f32>, inv: &Affine| -> Vec<f32> {
        let sampler = Sampler::new(data);
        (0..height * width).map(|n| sampler.at(inv.apply(point(n / width, n % width))).unwrap_or(0.0)).collect()
    };
    let draw = |values: Vec<f32>| encode_rgb_png(width, height, &overlay(&values, &outline)).unwrap_or_default();
    // The two series' images side by side on the pool.
    let (t1c_png, t2_png) = rayon::join(|| draw(plane(&t1c.data, a1_inv)), || draw(plane(&t2.data, a2_inv)));
    KeyImages { t1c_png, t2_png }
}

/// Grey levels windowed to the 1st–99.5th percentile of the tissue in the plane, outline in red.
fn overlay(values: &[f32], outline: &[bool]) -> Vec<u8> {
    let mut tissue: Vec<f32> = values.iter().copied().filter(|v| *v > 0.0).collect();
    tissue.sort_unstable_by(f32::total_cmp);
    let at = |q: f64| tissue.get(((tissue.len().saturating_sub(1)) as f64 * q) as usize).copied().unwrap_or(0.0);
    let (lo, hi) = (at(0.01), at(0.995));
    let span = (hi - lo).max(1e-6);
    let mut rgb = Vec::with_capacity(values.len() * 3);
    for (v, &edge) in values.iter().zip(outline) {
        if edge {
            rgb.extend_from_slice(&OUTLINE);
        } else {
            let g = (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
            rgb.extend_from_slice(&[g, g, g]);
        }
    }
    rgb
}

/// Encodes 8-bit RGB pixels (row-major, top row first) as a PNG.
pub fn encode_rgb_png(width: usize, height: usize, rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}
