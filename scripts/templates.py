#!/usr/bin/env python3
"""Converts two real brain templates into the tissue maps the cohort generator draws brains from.

    templates.py OUT_DIR MRICRON_TEMPLATES_DIR

* ``colin27`` -- the Colin27 single-subject brain (Debian ``mricron-data``: ``ch2bet.nii.gz``,
  skull-stripped T1 at 1 mm). Grey and white matter fractions come from a three-class fuzzy
  clustering of its intensities inside the brain mask (CSF, grey, white). Used for *training*.
* ``mni152`` -- the ICBM 2009a symmetric average (shipped with nilearn: its grey and white matter
  probability maps at 1 mm). Never used in training or tuning: the external-anatomy test set.

Each output ``NAME.ncdt`` is little-endian: the magic ``NCDTMPL1``; u32 dims (x, y, z); f32
origin of voxel (0, 0, 0) in LPS mm relative to the centre of the brain's bounding box; f32
half extents of that box (LR, AP, SI); then u8 white matter and u8 grey matter fractions
(x fastest, LPS axes, 1 mm voxels). Outside the maps is CSF or skull: the generator's own head
decides. Idempotent: a map that exists is left alone.
"""
import os
import struct
import sys

import nibabel as nib
import numpy as np


def to_lps(volume, affine):
    """Reorders a RAS+ 1 mm volume with a diagonal affine to LPS axes; returns it and the LPS
    position of its voxel (0, 0, 0)."""
    if not np.allclose(np.abs(np.diag(affine)[:3]), 1.0) or np.abs(affine[:3, :3] - np.diag(np.diag(affine)[:3])).max() > 1e-6:
        raise SystemExit("templates.py: expected a 1 mm axis-aligned template")
    ras_origin = affine[:3, 3]
    step = np.diag(affine)[:3]
    # LPS x = -RAS x, LPS y = -RAS y: flip the axes whose RAS step is positive.
    out = volume
    origin = np.array([-ras_origin[0], -ras_origin[1], ras_origin[2]], dtype=float)
    n = volume.shape
    if step[0] > 0:
        out = out[::-1, :, :]
        origin[0] = -(ras_origin[0] + step[0] * (n[0] - 1))
    if step[1] > 0:
        out = out[:, ::-1, :]
        origin[1] = -(ras_origin[1] + step[1] * (n[1] - 1))
    if step[2] < 0:
        out = out[:, :, ::-1]
        origin[2] = ras_origin[2] + step[2] * (n[2] - 1)
    return np.ascontiguousarray(out), origin


def fuzzy_classes(t1, mask):
    """Three-class fuzzy c-means on intensities inside `mask`: memberships of CSF, GM, WM."""
    values = t1[mask].astype(float)
    centres = np.percentile(values, [10, 50, 90])
    for _ in range(50):
        d = np.abs(values[:, None] - centres[None, :]) + 1e-6
        u = 1.0 / (d ** 2)
        u /= u.sum(axis=1, keepdims=True)
        new = (u ** 2 * values[:, None]).sum(axis=0) / (u ** 2).sum(axis=0)
        if np.allclose(new, centres, atol=1e-3):
            break
        centres = new
    order = np.argsort(centres)
    # Memberships by linear interpolation between the class centres: partial volume, not fuzz.
    c = centres[order]
    gm = np.interp(values, [c[0], c[1], c[2]], [0.0, 1.0, 0.0])
    wm = np.interp(values, [c[1], c[2]], [0.0, 1.0])
    out_wm = np.zeros(t1.shape, dtype=float)
    out_gm = np.zeros(t1.shape, dtype=float)
    out_wm[mask] = wm
    out_gm[mask] = gm
    return out_wm, out_gm


def write(path, wm, gm, origin):
    brain = (wm + gm) > 0.5
    idx = np.argwhere(brain)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    centre = origin + (lo + hi) / 2.0
    half = (hi - lo) / 2.0
    rel_origin = origin - centre
    dims = wm.shape
    to_u8 = lambda a: np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(b"NCDTMPL1")
        f.write(struct.pack("<3I", *dims))
        f.write(struct.pack("<3f", *rel_origin))
        f.write(struct.pack("<3f", *half))
        # x fastest: numpy's C order on a (z, y, x) array.
        f.write(to_u8(wm).transpose(2, 1, 0).tobytes(order="C"))
        f.write(to_u8(gm).transpose(2, 1, 0).tobytes(order="C"))
    os.replace(tmp, path)
    print(f"[templates] {os.path.basename(path)}: {dims} voxels, brain half extents {np.round(half, 1)} mm", file=sys.stderr)


def main():
    out_dir, mricron = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)

    colin = os.path.join(out_dir, "colin27.ncdt")
    if not os.path.exists(colin):
        img = nib.load(os.path.join(mricron, "ch2bet.nii.gz"))
        t1, origin = to_lps(img.get_fdata(), img.affine)
        wm, gm = fuzzy_classes(t1, t1 > 0)
        write(colin, wm, gm, origin)

    mni = os.path.join(out_dir, "mni152.ncdt")
    if not os.path.exists(mni):
        import nilearn.datasets

        data = os.path.join(os.path.dirname(nilearn.datasets.__file__), "data")
        load = lambda k: nib.load(os.path.join(data, f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz"))
        gm_img, wm_img = load("gm"), load("wm")
        scale = 255.0 if gm_img.get_fdata().max() > 1.5 else 1.0
        gm, origin = to_lps(gm_img.get_fdata() / scale, gm_img.affine)
        wm, _ = to_lps(wm_img.get_fdata() / scale, wm_img.affine)
        write(mni, wm, gm, origin)


if __name__ == "__main__":
    main()
