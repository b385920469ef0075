//! Minimal line plots on the unit square, drawn into RGB pixels and written as PNG: enough for
//! ROC and reliability curves in the validation report without a plotting dependency.
//!
//! The plots carry no text; the report names the axes (x and y both run from 0 to 1, with grid
//! lines every 0.1).

use neurocds_analysis::imaging::keyimage::encode_rgb_png;

pub const BLACK: [u8; 3] = [0, 0, 0];
pub const GREY: [u8; 3] = [200, 200, 200];
pub const BLUE: [u8; 3] = [31, 119, 180];
pub const ORANGE: [u8; 3] = [255, 127, 14];
pub const LIGHT: [u8; 3] = [170, 190, 215];

/// A square plot of `[0, 1] × [0, 1]` with a margin.
pub struct Canvas {
    size: usize,
    margin: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    /// A white canvas with grid lines and the frame drawn.
    pub fn unit_square(size: usize) -> Canvas {
        let mut c = Canvas { size, margin: size / 12, rgb: vec![255; size * size * 3] };
        for t in 1..10 {
            let v = t as f64 / 10.0;
            c.line((v, 0.0), (v, 1.0), GREY, 1);
            c.line((0.0, v), (1.0, v), GREY, 1);
        }
        for (a, b) in [((0.0, 0.0), (1.0, 0.0)), ((1.0, 0.0), (1.0, 1.0)), ((1.0, 1.0), (0.0, 1.0)), ((0.0, 1.0), (0.0, 0.0))] {
            c.line(a, b, BLACK, 2);
        }
        c
    }

    fn to_pixel(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let span = (self.size - 2 * self.margin) as f64;
        (self.margin as f64 + x.clamp(0.0, 1.0) * span, (self.size - self.margin) as f64 - y.clamp(0.0, 1.0) * span)
    }

    fn dot(&mut self, px: f64, py: f64, colour: [u8; 3], thickness: usize) {
        let r = (thickness as isize - 1) / 2;
        for dy in 0..thickness as isize {
            for dx in 0..thickness as isize {
                let (x, y) = (px.round() as isize + dx - r, py.round() as isize + dy - r);
                if x >= 0 && y >= 0 && (x as usize) < self.size && (y as usize) < self.size {
                    let o = (y as usize * self.size + x as usize) * 3;
                    self.rgb[o..o + 3].copy_from_slice(&colour);
                }
            }
        }
    }

    /// A straight segment between two points in data coordinates.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), colour: [u8; 3], thickness: usize) {
        let (pa, pb) = (self.to_pixel(a), self.to_pixel(b));
        let steps = (pb.0 - pa.0).abs().max((pb.1 - pa.1).abs()).ceil().max(1.0) as usize;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            self.dot(pa.0 + (pb.0 - pa.0) * t, pa.1 + (pb.1 - pa.1) * t, colour, thickness);
        }
    }

    pub fn polyline(&mut self, points: &[(f64, f64)], colour: [u8; 3], thickness: usize) {
        for w in points.windows(2) {
            self.line(w[0], w[1], colour, thickness);
        }
    }

    /// A filled square marker.
    pub fn marker(&mut self, p: (f64, f64), colour: [u8; 3], size: usize) {
        let q = self.to_pixel(p);
        self.dot(q.0, q.1, colour, size);
    }

    pub fn png(&self) -> Result<Vec<u8>, png::EncodingError> {
        encode_rgb_png(self.size, self.size, &self.rgb)
    }
}
