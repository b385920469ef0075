#!/usr/bin/env python3
"""The pydicom + numpy side of the decode comparison of the imaging benchmark (issue 4).

    ~/.cache/neurocds/tools-venv/bin/python bench/decode_pydicom.py STUDY_DIR REPETITIONS

Decodes every file listed in STUDY_DIR/manifest.json the way a Python pipeline would: read the
file (pydicom.dcmread), decode the pixels (pixel_array) and apply the modality rescale to
float32 (what neurocds keeps per voxel). Prints one JSON object: the file count, their bytes,
the decoded voxels, and the wall time of each repetition in seconds (timed in-process, after
imports; interpreter start-up is not counted). benches/imaging_pipeline.rs runs it right after
timing its own decode of the same files and prints the ratio.
"""

import json
import os
import sys
import time

import numpy as np
import pydicom


def decode(path):
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype(np.float32)
    slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    if (slope, intercept) != (1.0, 0.0):
        pixels = pixels * np.float32(slope) + np.float32(intercept)
    return pixels


def main():
    study, reps = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(study, "manifest.json")) as f:
        manifest = json.load(f)
    files = [os.path.join(study, p) for s in manifest["series"] for p in s["files"]]
    file_bytes = sum(os.path.getsize(p) for p in files)
    seconds, voxels, checksum = [], 0, 0.0
    for _ in range(reps):
        start = time.perf_counter()
        voxels, checksum = 0, 0.0
        for path in files:
            pixels = decode(path)
            voxels += pixels.size
            checksum += float(pixels[0, 0])
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"files": len(files), "file_bytes": file_bytes, "voxels": voxels, "seconds": seconds,
                      "pydicom": pydicom.__version__, "numpy": np.__version__, "checksum": checksum}))


if __name__ == "__main__":
    main()
