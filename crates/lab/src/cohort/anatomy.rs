//! The procedural head phantom: scalp, skull, CSF, folded cortex, white matter, deep grey
//! matter, ventricles, choroid plexus and the superior sagittal sinus, with a smooth random
//! shape per patient.
//!
//! Everything is expressed in millimetres relative to the head centre, axes LPS. The shapes are
//! analytic so that any point can be evaluated without a template; the per-axis parts (cortical
//! folding, shape deformation) are sums of one-dimensional waves, so the renderer can tabulate
//! them once per grid axis instead of calling `sin` for every voxel.

use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;

use super::rng;
use super::template::TemplateBrain;

/// Fractions of each tissue in one voxel (they sum to at most 1; the rest is air).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tissue {
    pub wm: f32,
    pub gm: f32,
    pub csf: f32,
    /// Scalp fat and skin; diploic marrow.
    pub fat: f32,
    pub bone: f32,
    /// Choroid plexus (and, with the full enhancing anatomy, the pituitary): enhancing soft tissue.
    pub choroid: f32,
    pub sinus: f32,
    /// Falx cerebri (dura): a thin enhancing sheet in the interhemispheric fissure.
    pub dura: f32,
    /// Arteries and cortical veins: thin enhancing tubes, flow voids on T2.
    pub vessel: f32,
    /// Inside the inner table of the skull (where a tumour may grow).
    pub intracranial: f32,
}

impl Tissue {
    /// Nothing but air.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.fat == 0.0 && self.bone == 0.0 && self.intracranial == 0.0
    }
}

/// A smooth one-dimensional function: a sum of two sinusoids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wave1 {
    terms: [(f64, f64, f64); 2], // amplitude, angular frequency (rad/mm), phase
}

impl Wave1 {
    fn random(rng: &mut StdRng, amplitude: f64, wavelength_mm: (f64, f64)) -> Self {
        let mut term = |a: f64| {
            let wl = rng::uniform(rng, wavelength_mm.0, wavelength_mm.1);
            (a, std::f64::consts::TAU / wl, rng::uniform(rng, 0.0, std::f64::consts::TAU))
        };
        Self { terms: [term(amplitude), term(amplitude * 0.35)] }
    }

    #[inline]
    pub fn eval(&self, x: f64) -> f64 {
        self.terms.iter().map(|&(a, k, p)| a * (k * x + p).sin()).sum()
    }
}

/// An axis-aligned ellipsoid (mm).
#[derive(Debug, Clone, Copy)]
struct Ellipsoid {
    centre: [f64; 3],
    semi: [f64; 3],
}

impl Ellipsoid {
    /// Share of a voxel at `q` inside the ellipsoid (partial-volume width `w`); the box test
    /// first, because most voxels are far from any given structure.
    #[inline]
    fn coverage(&self, q: [f64; 3], w: f64) -> f64 {
        for a in 0..3 {
            if (q[a] - self.centre[a]).abs() > self.semi[a] + w {
                return 0.0;
            }
        }
        1.0 - ramp(self.distance(q), w)
    }

    /// Approximate signed distance in mm (negative inside): cheap and good enough for partial
    /// volume ramps a voxel wide.
    #[inline]
    fn distance(&self, q: [f64; 3]) -> f64 {
        let dx = (q[0] - self.centre[0]) / self.semi[0];
        let dy = (q[1] - self.centre[1]) / self.semi[1];
        let dz = (q[2] - self.centre[2]) / self.semi[2];
        let min_semi = self.semi[0].min(self.semi[1]).min(self.semi[2]);
        ((dx * dx + dy * dy + dz * dz).sqrt() - 1.0) * min_semi
    }
}

/// Linear partial-volume ramp: 0 well below the surface at `x = 0`, 1 well above, over `w` mm.
#[inline]
pub(crate) fn ramp(x: f64, w: f64) -> f64 {
    (0.5 + x / w).clamp(0.0, 1.0)
}

/// One patient's head.
#[derive(Debug, Clone)]
pub(crate) struct Anatomy {
    /// Outer scalp semi-axes (LR, AP, SI).
    pub semi: [f64; 3],
    /// Relative radial deformation, one wave per axis (added).
    pub deform: [Wave1; 3],
    /// Cortical folding field, one wave per axis (added); its zero set is the sulcal sheet.
    pub fold: [Wave1; 3],
    fold_gradient: f64,
    sulcus_half_width_mm: f64,
    sulcus_depth_mm: f64,
    cortex_mm: f64,
    midline_x: f64,
    ventricles: Vec<Ellipsoid>,
    deep_grey: Vec<Ellipsoid>,
    choroid: Vec<Ellipsoid>,
    /// The rest of the normal enhancing anatomy, when drawn.
    enhancing: Option<EnhancingAnatomy>,
    /// A real brain in place of the analytic cortex, ventricles and deep grey matter.
    template: Option<PlacedTemplate>,
}

/// A template brain fitted into this head: template mm = head mm × (1 − deformation) / scale.
#[derive(Debug, Clone)]
struct PlacedTemplate {
    brain: Arc<TemplateBrain>,
    scale: [f64; 3],
}

/// How much of the phantom's brain ellipsoid a template's bounding box fills: a box fills its
/// inscribed ellipsoid's corners, so the fit is a little over 1; the few corner voxels beyond
/// the inner table are clipped there (ASSUMPTIONS.md, "More than one anatomy").
const TEMPLATE_FIT: f64 = 1.04;

/// A straight tube between two points (mm, head-relative).
#[derive(Debug, Clone, Copy)]
struct Tube {
    a: [f64; 3],
    b: [f64; 3],
    radius: f64,
}

impl Tube {
    /// Share of a voxel at `q` inside the tube (partial-volume width `w`).
    #[inline]
    fn coverage(&self, q: [f64; 3], w: f64) -> f64 {
        let reach = self.radius + w;
        for k in 0..3 {
            if q[k] < self.a[k].min(self.b[k]) - reach || q[k] > self.a[k].max(self.b[k]) + reach {
                return 0.0;
            }
        }
        let ab = [self.b[0] - self.a[0], self.b[1] - self.a[1], self.b[2] - self.a[2]];
        let aq = [q[0] - self.a[0], q[1] - self.a[1], q[2] - self.a[2]];
        let len2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
        let t = if len2 > 0.0 { ((aq[0] * ab[0] + aq[1] * ab[1] + aq[2] * ab[2]) / len2).clamp(0.0, 1.0) } else { 0.0 };
        let d = [aq[0] - t * ab[0], aq[1] - t * ab[1], aq[2] - t * ab[2]];
        1.0 - ramp((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt() - self.radius, w)
    }
}

/// Normal structures that enhance after gadolinium, beyond the superior sagittal sinus and the
/// choroid plexus glomus every phantom has (ASSUMPTIONS.md, "Normal enhancing anatomy").
#[derive(Debug, Clone)]
struct EnhancingAnatomy {
    falx_half_mm: f64,
    /// Transverse sinuses: height of their axis (z) and radius; they run along the inner table
    /// of the posterior skull.
    transverse_z: f64,
    transverse_radius: f64,
    straight_sinus: Tube,
    /// Sylvian (middle cerebral) branches and cortical veins.
    vessels: Vec<Tube>,
    pituitary: Ellipsoid,
    infundibulum: Tube,
}

/// Depths below the scalp surface (mm) of the layers of the head.
const SCALP_MM: f64 = 5.0;
const SKULL_MM: f64 = 11.5;
const CSF_MM: f64 = 13.0;

impl Anatomy {
    /// A random head; older patients get larger ventricles and wider sulci (atrophy).
    pub fn random(rng: &mut StdRng, age: u32) -> Self {
        let size = rng::normal(rng, 1.0, 0.035).clamp(0.9, 1.08);
        let semi = [
            78.0 * size * rng::uniform(rng, 0.96, 1.04),
            98.0 * size * rng::uniform(rng, 0.96, 1.04),
            88.0 * size * rng::uniform(rng, 0.96, 1.04),
        ];
        let deform = [
            Wave1::random(rng, 0.02, (90.0, 220.0)),
            Wave1::random(rng, 0.02, (90.0, 220.0)),
            Wave1::random(rng, 0.015, (90.0, 220.0)),
        ];
        // Sulci every 2-3 cm: the zero set of a sum of three waves is a connected labyrinth of
        // sheets, dense enough for a convoluted look, sparse enough to leave white matter cores.
        let fold_wavelength = rng::uniform(rng, 40.0, 50.0);
        let fold = [
            Wave1::random(rng, 1.0, (fold_wavelength * 0.85, fold_wavelength * 1.15)),
            Wave1::random(rng, 1.0, (fold_wavelength * 0.85, fold_wavelength * 1.15)),
            Wave1::random(rng, 1.0, (fold_wavelength * 0.85, fold_wavelength * 1.15)),
        ];
        let atrophy = ((age as f64 - 40.0) / 45.0).clamp(0.0, 1.0);
        let vs = (0.8 + 0.7 * atrophy) * rng::uniform(rng, 0.85, 1.15);
        let asym = rng::uniform(rng, -0.12, 0.12);
        let midline_x = rng::uniform(rng, -1.5, 1.5);
        let mut ventricles = Vec::new();
        for side in [-1.0, 1.0] {
            let s = vs * (1.0 + side * asym);
            // Lateral ventricle body and frontal horn, atrium and occipital horn.
            ventricles.push(Ellipsoid { centre: [midline_x + side * (4.0 + 5.0 * s), -2.0, 14.0], semi: [3.0 + 2.5 * s, 28.0, 4.0 + 3.5 * s] });
            ventricles.push(Ellipsoid { centre: [midline_x + side * 15.0, 26.0, 10.0], semi: [4.0 * s + 2.0, 9.0, 6.0 * s] });
        }
        ventricles.push(Ellipsoid { centre: [midline_x, 4.0, -2.0], semi: [1.2 + 1.6 * vs, 12.0, 8.0] });
        let mut deep_grey = Vec::new();
        let mut choroid = Vec::new();
        for side in [-1.0, 1.0] {
            deep_grey.push(Ellipsoid { centre: [midline_x + side * 10.0, 8.0, 0.0], semi: [8.0, 14.0, 9.0] }); // thalamus
            deep_grey.push(Ellipsoid { centre: [midline_x + side * 23.0, -4.0, 1.0], semi: [6.0, 15.0, 10.0] }); // lentiform
            deep_grey.push(Ellipsoid { centre: [midline_x + side * (9.0 + 4.0 * vs), -20.0, 11.0], semi: [4.5, 9.0, 8.0] }); // caudate head
            choroid.push(Ellipsoid { centre: [midline_x + side * 15.0, 25.0, 9.0], semi: [2.5, 5.0, 3.0] });
        }
        Self {
            semi,
            deform,
            fold,
            fold_gradient: std::f64::consts::TAU / fold_wavelength * 1.3,
            sulcus_half_width_mm: 0.4 + 0.9 * atrophy,
            sulcus_depth_mm: rng::uniform(rng, 9.0, 13.0),
            cortex_mm: rng::uniform(rng, 2.2, 2.8),
            midline_x,
            ventricles,
            deep_grey,
            choroid,
            enhancing: None,
            template: None,
        }
    }

    /// Puts a real brain template inside this head, scaled to the head's brain extent, with a
    /// few per cent of random anisotropic scaling of its own. Its folding, ventricles and deep
    /// grey matter replace the phantom's; scalp, skull, sinuses, falx, vessels and choroid
    /// plexus stay the phantom's.
    pub fn use_template(&mut self, rng: &mut StdRng, brain: Arc<TemplateBrain>) {
        let fit = self.brain_semi();
        let scale = [0, 1, 2].map(|a| fit[a] * TEMPLATE_FIT / brain.half_extent[a] * rng::uniform(rng, 0.96, 1.02));
        self.template = Some(PlacedTemplate { brain, scale });
    }

    /// Adds the full normal enhancing anatomy: falx, transverse and straight sinuses, Sylvian
    /// and cortical vessels, pituitary and infundibulum, and a choroid plexus of varying size.
    pub fn add_enhancing_anatomy(&mut self, rng: &mut StdRng) {
        let m = self.midline_x;
        let transverse_radius = rng::uniform(rng, 3.0, 4.5);
        let transverse_z = rng::uniform(rng, -22.0, -10.0);
        let back = self.semi[1] - SKULL_MM - transverse_radius - 1.0;
        let straight_sinus = Tube { a: [m, back, transverse_z], b: [m, rng::uniform(rng, 24.0, 32.0), rng::uniform(rng, 8.0, 14.0)], radius: rng::uniform(rng, 2.0, 3.0) };
        let mut vessels = Vec::new();
        for side in [-1.0, 1.0] {
            // The middle cerebral artery and its Sylvian branches.
            let r = rng::uniform(rng, 1.0, 1.5);
            let p0 = [m + side * 8.0, rng::uniform(rng, -12.0, -6.0), rng::uniform(rng, -10.0, -4.0)];
            let p1 = [m + side * rng::uniform(rng, 30.0, 36.0), rng::uniform(rng, -6.0, 2.0), rng::uniform(rng, -4.0, 4.0)];
            let p2 = [m + side * rng::uniform(rng, 44.0, 52.0), rng::uniform(rng, 4.0, 18.0), rng::uniform(rng, 8.0, 20.0)];
            vessels.push(Tube { a: p0, b: p1, radius: r });
            vessels.push(Tube { a: p1, b: p2, radius: r * 0.8 });
        }
        // Cortical veins on the brain surface, draining towards the superior sagittal sinus.
        let mean = self.mean_semi();
        for _ in 0..rng.random_range(3..=6) {
            let side = if rng.random::<bool>() { 1.0 } else { -1.0 };
            let on_surface = |u: [f64; 3], depth: f64| {
                let n = (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]).sqrt();
                let f = 1.0 - depth / mean;
                [u[0] / n * self.semi[0] * f, u[1] / n * self.semi[1] * f, u[2] / n * self.semi[2] * f]
            };
            let y = rng::uniform(rng, -0.7, 0.7);
            let low = on_surface([side * rng::uniform(rng, 0.6, 0.9), y, rng::uniform(rng, 0.1, 0.4)], CSF_MM + 0.5);
            let high = on_surface([side * rng::uniform(rng, 0.15, 0.3), y + rng::uniform(rng, -0.15, 0.15), rng::uniform(rng, 0.7, 0.9)], CSF_MM + 0.5);
            vessels.push(Tube { a: low, b: high, radius: rng::uniform(rng, 0.9, 1.6) });
        }
        let grow = rng::uniform(rng, 1.0, 1.6);
        for c in &mut self.choroid {
            c.semi = c.semi.map(|x| x * grow);
        }
        self.enhancing = Some(EnhancingAnatomy {
            falx_half_mm: rng::uniform(rng, 0.5, 1.0),
            transverse_z,
            transverse_radius,
            straight_sinus,
            vessels,
            pituitary: Ellipsoid { centre: [m, rng::uniform(rng, -16.0, -10.0), rng::uniform(rng, -44.0, -36.0)], semi: [rng::uniform(rng, 5.0, 7.0), 5.0, rng::uniform(rng, 3.0, 4.5)] },
            infundibulum: Tube { a: [m, -10.0, -36.0], b: [m, -6.0, -22.0], radius: 1.2 },
        });
    }

    /// Deformation at a point, the sum of the per-axis waves (for points off the grid).
    pub fn deform_at(&self, q: [f64; 3]) -> f64 {
        self.deform[0].eval(q[0]) + self.deform[1].eval(q[1]) + self.deform[2].eval(q[2])
    }

    /// Folding field at a point (for points off the grid).
    pub fn fold_at(&self, q: [f64; 3]) -> f64 {
        self.fold[0].eval(q[0]) + self.fold[1].eval(q[1]) + self.fold[2].eval(q[2])
    }

    /// Normalised radius of `q` on the scalp ellipsoid after deformation (1 = scalp surface).
    #[inline]
    pub fn radius(&self, q: [f64; 3], deform: f64) -> f64 {
        let x = q[0] / self.semi[0];
        let y = q[1] / self.semi[1];
        let z = q[2] / self.semi[2];
        (x * x + y * y + z * z).sqrt() * (1.0 - deform)
    }

    /// The brain's extent along each axis (for placing lesions inside it).
    pub fn brain_semi(&self) -> [f64; 3] {
        let mean = self.mean_semi();
        self.semi.map(|s| s * (1.0 - CSF_MM / mean))
    }

    /// Depth of `q` below the (deformed) scalp surface, mm; negative outside the head.
    pub fn depth_at(&self, q: [f64; 3]) -> f64 {
        (1.0 - self.radius(q, self.deform_at(q))) * self.mean_semi()
    }

    /// Depth of the skull's inner table below the scalp surface (mm).
    pub fn inner_table_mm(&self) -> f64 {
        SKULL_MM
    }

    fn mean_semi(&self) -> f64 {
        (self.semi[0] + self.semi[1] + self.semi[2]) / 3.0
    }

    /// Tissue fractions at `q`; `deform` and `fold` are this point's field values (tabulated
    /// by the caller), `w` the partial-volume width in mm.
    #[inline]
    pub fn tissue(&self, q: [f64; 3], deform: f64, fold: f64, w: f64) -> Tissue {
        let depth = (1.0 - self.radius(q, deform)) * self.mean_semi();
        let mut t = Tissue::default();
        if depth < -w {
            return t; // air
        }
        let inside_scalp = ramp(depth, w);
        let below_scalp = ramp(depth - SCALP_MM, w);
        let below_skull = ramp(depth - SKULL_MM, w);
        let below_csf = ramp(depth - CSF_MM, w);
        // Diploic marrow in the middle of the skull reads like fat on T1.
        let bone_layer = (below_scalp - below_skull) as f32;
        let diploe = (1.0 - ((depth - (SCALP_MM + SKULL_MM) / 2.0).abs() / 1.6)).clamp(0.0, 1.0) as f32;
        t.fat = (inside_scalp - below_scalp) as f32 + bone_layer * diploe * 0.6;
        t.bone = bone_layer * (1.0 - diploe * 0.6);
        t.intracranial = below_skull as f32;
        let outer_csf = (below_skull - below_csf) as f32;
        if below_skull <= 0.0 {
            return t;
        }

        // Distance to the nearest CSF surface: the brain surface, a sulcus, or the
        // interhemispheric fissure.
        let cortical_depth = depth - CSF_MM;
        let sheet = fold.abs() / self.fold_gradient;
        let mut to_csf = cortical_depth.min(sheet.max(cortical_depth - self.sulcus_depth_mm) - self.sulcus_half_width_mm);
        let dx = (q[0] - self.midline_x).abs();
        // The fissure reaches down to the corpus callosum between the frontal and occipital
        // horns, and all the way down in front of and behind it.
        let fissure_floor = if q[1].abs() < 38.0 { 22.0 } else { -200.0 };
        if q[2] > fissure_floor {
            to_csf = to_csf.min(dx - 1.2);
        }
        // Superior sagittal sinus: in the midline, just inside the skull, above the vertex half.
        if dx < 4.0 && q[2] > 0.0 {
            let s = (ramp(3.0 - dx, w) * (below_skull - ramp(depth - (SKULL_MM + 5.0), w))) as f32;
            t.sinus = s.min(outer_csf + 0.5).min(1.0);
        }

        let (mut csf, mut gm, mut wm);
        if let Some(placed) = &self.template {
            // The template's brain, clipped a millimetre inside the inner table; everything
            // else inside the skull is CSF.
            let shrink = 1.0 - deform;
            let p = [
                (q[0] - self.midline_x) * shrink / placed.scale[0],
                q[1] * shrink / placed.scale[1],
                q[2] * shrink / placed.scale[2],
            ];
            let (w_t, g_t) = placed.brain.sample(p);
            let room = ramp(depth - SKULL_MM - 1.0, w) as f32;
            let total = w_t + g_t;
            let clip = if total > room && total > 0.0 { room / total } else { 1.0 };
            wm = w_t * clip;
            gm = g_t * clip;
            csf = (below_skull as f32 - wm - gm).max(0.0);
            let plexus = if q[0].abs() < 40.0 && q[1].abs() < 45.0 && q[2] > -30.0 && q[2] < 35.0 {
                self.choroid.iter().map(|e| e.coverage(q, w)).fold(0.0, f64::max) as f32
            } else {
                0.0
            };
            // Choroid plexus only where the template has ventricular CSF around the glomus.
            t.choroid = (plexus * csf).min(csf);
            csf -= t.choroid;
        } else {
            let parenchyma = ramp(to_csf, w);
            let white = ramp(to_csf - self.cortex_mm, w);
            csf = (below_csf * (1.0 - parenchyma)) as f32 + outer_csf;
            gm = (below_csf * (parenchyma - white)) as f32;
            wm = (below_csf * white) as f32;

            // Deep structures only exist near the centre; skip the ellipsoids elsewhere.
            if q[0].abs() < 40.0 && q[1].abs() < 45.0 && q[2] > -30.0 && q[2] < 35.0 {
                let deep = self.deep_grey.iter().map(|e| e.coverage(q, w)).fold(0.0, f64::max) as f32;
                let moved = wm * deep * 0.8;
                wm -= moved;
                gm += moved;
                let vent = self.ventricles.iter().map(|e| e.coverage(q, w)).fold(0.0, f64::max) as f32;
                let plexus = self.choroid.iter().map(|e| e.coverage(q, w)).fold(0.0, f64::max) as f32;
                let brain = wm + gm;
                let taken = vent.min(brain);
                if brain > 0.0 {
                    wm -= wm / brain * taken;
                    gm -= gm / brain * taken;
                }
                let choroid = (plexus * taken).min(taken);
                csf += taken - choroid;
                t.choroid = choroid;
            }
        }
        if let Some(e) = &self.enhancing {
            // The falx fills the fissure's midline; the sinuses and vessels displace CSF first,
            // then brain.
            if q[2] > fissure_floor {
                let falx = (ramp(e.falx_half_mm - dx, w) * below_skull) as f32;
                t.dura = falx.min(csf);
                csf -= t.dura;
            }
            if q[1] > 10.0 && (q[2] - e.transverse_z).abs() < e.transverse_radius + w {
                let centre_depth = SKULL_MM + e.transverse_radius;
                let d = ((depth - centre_depth).powi(2) + (q[2] - e.transverse_z).powi(2)).sqrt();
                t.sinus = t.sinus.max((1.0 - ramp(d - e.transverse_radius, w)) as f32 * below_skull as f32);
            }
            t.sinus = t.sinus.max(e.straight_sinus.coverage(q, w) as f32);
            let vessel = e.vessels.iter().map(|v| v.coverage(q, w)).fold(0.0, f64::max) as f32;
            let from_csf = vessel.min(csf);
            csf -= from_csf;
            let from_gm = (vessel - from_csf).min(gm);
            gm -= from_gm;
            t.vessel = from_csf + from_gm;
            let pit = e.pituitary.coverage(q, w).max(e.infundibulum.coverage(q, w)) as f32;
            if pit > 0.0 {
                let brain = wm + gm + csf;
                let taken = pit.min(brain);
                if brain > 0.0 {
                    wm -= wm / brain * taken;
                    gm -= gm / brain * taken;
                    csf -= csf / brain * taken;
                }
                t.choroid += taken;
            }
        }
        let sinus_taken = t.sinus.min(csf + gm);
        let from_csf = sinus_taken.min(csf);
        csf -= from_csf;
        gm -= sinus_taken - from_csf;
        t.wm = wm.max(0.0);
        t.gm = gm.max(0.0);
        t.csf = csf.max(0.0);
        t
    }
}
