#!/usr/bin/env python3
"""Reads a NIfTI file (dcm2niix's output) with nibabel for the volume-assembly cross-check.

    python dicom_nifti_probe.py IN.nii OUT_PREFIX

Writes OUT_PREFIX.json ({"shape": [x, y, z], "affine": 4x4 RAS, "inverse": 4x4}) and
OUT_PREFIX.f32: the scaled voxel values (scl_slope/scl_inter applied) as little-endian float32,
x fastest (index = x + nx * (y + ny * z)).
"""
import json
import sys

import nibabel as nib
import numpy as np

img = nib.load(sys.argv[1])
data = np.asarray(img.get_fdata(), dtype="<f4")
if data.ndim == 4 and data.shape[3] == 1:
    data = data[..., 0]
with open(sys.argv[2] + ".json", "w") as f:
    json.dump({"shape": list(data.shape), "affine": img.affine.tolist(), "inverse": np.linalg.inv(img.affine).tolist()}, f)
data.ravel(order="F").tofile(sys.argv[2] + ".f32")
