#!/usr/bin/env python3
"""Writes the study of the imaging benchmark (issue 4) into OUT_DIR, plus OUT_DIR/manifest.json
(file paths in it are relative to OUT_DIR).

    ~/.cache/neurocds/tools-venv/bin/python bench/make_imaging_study.py OUT_DIR

Two series of 176 sagittal slices of 256 x 256 16-bit pixels (1 mm isotropic), the size of a
3D MPRAGE: a T1 post-contrast ("t1_mprage_sag_p2_iso_post", Gadovist) and a T2
("t2_space_sag_p2_iso"), in one frame of reference. The anatomy is nilearn's MNI ICBM152 2009a
T1 template (real, 1 mm), resampled with scipy as scripts/testdata/make_dicom_fixtures.py does;
the T2 is the same anatomy with inverted intensities. A ring-enhancing lesion (necrotic core,
enhancing rim, T2-bright oedema) sits in the right frontal white matter so that preprocessing
finds a lesion and does not abstain. Seeded noise; deterministic UIDs (2.25.<hash>), so a rerun
writes byte-identical files and an upload to Orthanc is idempotent.

Run by scripts/bench_imaging.sh through benches/imaging_pipeline.rs, which caches the result
under $NEUROCDS_CACHE/bench-imaging/. Bump VERSION when the output changes.
"""

import hashlib
import json
import os
import sys

import numpy as np
from pydicom.dataset import FileDataset
from scipy.ndimage import map_coordinates

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "testdata"))
from make_dicom_fixtures import MR_IMAGE, Template, common, file_meta, mr_timing  # noqa: E402

VERSION = "1"
SLICES, ROWS, COLS, SPACING_MM = 176, 256, 256, 1.0
# Sagittal: rows run anterior to posterior, columns superior to inferior; slices right to left.
ROW_DIR, COL_DIR = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
NORMAL = np.cross(ROW_DIR, COL_DIR)
# Right frontal white matter of the MNI template (RAS (24, 18, 28) mm), in LPS.
LESION_LPS = np.array([-24.0, -18.0, 28.0])
LESION_RADIUS_MM = 14.0
OEDEMA_MM = 10.0
T1_SCALE = 10.0


def uid(name):
    return "2.25." + str(int.from_bytes(hashlib.sha256(f"neurocds-bench-imaging/{VERSION}/{name}".encode()).digest()[:16], "big"))


def sample_slice(template, origin, k):
    """Template values (x T1_SCALE) on sagittal slice k, shaped [row, column], and the slice's
    LPS positions."""
    r, c = np.meshgrid(np.arange(ROWS), np.arange(COLS), indexing="ij")
    lps = origin + k * SPACING_MM * NORMAL + c[..., None] * SPACING_MM * ROW_DIR + r[..., None] * SPACING_MM * COL_DIR
    ras = lps * np.array([-1.0, -1.0, 1.0])
    vox = ras.reshape(-1, 3) @ template.inv[:3, :3].T + template.inv[:3, 3]
    vals = map_coordinates(template.data, vox.T, order=1, cval=0.0).reshape(ROWS, COLS)
    return vals * T1_SCALE, lps


def contrasts(t1, lps, rng):
    """The T1c and T2 stored values of one slice (12-bit), lesion and noise included."""
    t2 = np.where(t1 > 300.0, 3300.0 - t1, 0.0)
    d = np.linalg.norm(lps - LESION_LPS, axis=-1)
    core, rim = d < 0.6 * LESION_RADIUS_MM, (d >= 0.6 * LESION_RADIUS_MM) & (d < LESION_RADIUS_MM)
    oedema = (d >= LESION_RADIUS_MM) & (d < LESION_RADIUS_MM + OEDEMA_MM) & (t1 > 300.0)
    t1 = np.where(core, 0.45 * t1, np.where(rim, 3900.0, t1))
    t2 = np.where(core, 3000.0, np.where(rim, 1400.0, np.where(oedema, t2 + 800.0, t2)))
    out = []
    for v in (t1, t2):
        v = v + rng.normal(0.0, 20.0, v.shape)
        out.append(np.clip(np.round(np.abs(v)), 0, 4095).astype(np.uint16))
    return out


def main():
    out = sys.argv[1]
    template = Template()
    centre = np.array([0.0, 18.0, 18.0])  # LPS centre of the template's head
    origin = centre - (COLS - 1) / 2.0 * SPACING_MM * ROW_DIR - (ROWS - 1) / 2.0 * SPACING_MM * COL_DIR - (SLICES - 1) / 2.0 * SPACING_MM * NORMAL
    study = {"uid": uid("study"), "frame_of_reference": uid("frame-of-reference")}
    mprage = dict(scanning_sequence=["GR", "IR"], sequence_variant=["SP", "MP"], acquisition="3D", tr=2300.0, te=2.32, ti=900.0)
    specs = [
        dict(name="t1c", description="t1_mprage_sag_p2_iso_post", number=5, time="102000", agent="Gadovist", series_uid=uid("series/t1c"), **mprage),
        dict(name="t2", description="t2_space_sag_p2_iso", number=3, time="101000", series_uid=uid("series/t2"),
             scanning_sequence=["SE"], sequence_variant=["SK", "SP"], acquisition="3D", tr=3200.0, te=409.0),
    ]
    folders = {}
    for spec in specs:
        folders[spec["name"]] = os.path.join(out, spec["name"])
        os.makedirs(folders[spec["name"]], exist_ok=True)
    rng = np.random.default_rng(20261126)
    files = {s["name"]: [] for s in specs}
    for k in range(SLICES):
        t1, lps = sample_slice(template, origin, k)
        for spec, pixels in zip(specs, contrasts(t1, lps, rng)):
            sop = uid(f"instance/{spec['name']}/{k + 1}")
            ds = FileDataset(None, {}, file_meta=file_meta(MR_IMAGE, sop), preamble=b"\0" * 128)
            common(ds, study, spec, MR_IMAGE, sop)
            mr_timing(ds, spec)
            ds.PatientName, ds.PatientID, ds.AccessionNumber = "NEUROCDS^BENCH", "NEUROCDS-BENCH", "BENCH1"
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [round(float(x), 4) for x in origin + k * SPACING_MM * NORMAL]
            ds.ImageOrientationPatient = [float(x) for x in np.concatenate([ROW_DIR, COL_DIR])]
            ds.PixelSpacing = [SPACING_MM, SPACING_MM]
            ds.SliceThickness = SPACING_MM
            ds.Rows, ds.Columns = ROWS, COLS
            ds.PixelData = pixels.tobytes()
            path = os.path.join(folders[spec["name"]], f"{k + 1:04d}.dcm")
            ds.save_as(path, enforce_file_format=True)
            files[spec["name"]].append(os.path.relpath(path, out))
    manifest = {
        "version": VERSION,
        "study_uid": study["uid"],
        "frame_of_reference_uid": study["frame_of_reference"],
        "lesion_centre_lps": LESION_LPS.tolist(),
        "series": [
            {"name": s["name"], "series_uid": s["series_uid"], "description": s["description"], "slices": SLICES, "rows": ROWS, "cols": COLS, "files": files[s["name"]]}
            for s in specs
        ],
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
