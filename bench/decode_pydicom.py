#!/usr/bin/env python3
"""The pydicom + numpy side of the decode comparison of the imaging benchmark (issue 4).

    ~/.cache/neurocds/tools-venv/bin/python bench/decode_pydicom.py STUDY_DIR
    (then one line on stdin per timed pass; e.g. `yes | head -5 | … decode_pydicom.py DIR`)

Decodes every file listed in STUDY_DIR/manifest.json the way a Python pipeline would: read the
file (pydicom.dcmread), decode the pixels (pixel_array) and apply the modality rescale to
float32 (what neurocds keeps per voxel). First prints one JSON line describing the files (after
one untimed pass that warms imports and the page cache), then, for each line read on stdin,
decodes everything once and prints {"seconds": …} (timed in-process: interpreter start-up and
imports are not counted). benches/imaging_pipeline.rs alternates these passes with its own over
the same files, so that both decoders see the same machine load, and prints the ratio.
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


def decode_all(files):
    voxels = 0
    for path in files:
        voxels += decode(path).size
    return voxels


def main():
    study = sys.argv[1]
    with open(os.path.join(study, "manifest.json")) as f:
        manifest = json.load(f)
    files = [os.path.join(study, p) for s in manifest["series"] for p in s["files"]]
    voxels = decode_all(files)
    print(json.dumps({"files": len(files), "file_bytes": sum(os.path.getsize(p) for p in files), "voxels": voxels,
                      "pydicom": pydicom.__version__, "numpy": np.__version__}), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        decode_all(files)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
