"""The Python reference pipeline (issue 18): what a straightforward scripted implementation of
neurocds' analysis does with the same study, the same archive and the same TorchScript members,
so that neurocds' speed can be stated as a ratio measured side by side (bench/side_by_side.py).

The steps and stage names follow neurocds' audit (`stage_timings_ms`):

  series_metadata  QIDO-RS series search, then WADO-RS metadata of every MR series, and the
                   T1c/T2 choice (contrast agent + T1 timing; T2 timing)
  retrieval        WADO-RS retrieval of both series at once (two threads), multipart split,
                   pydicom parse of every instance
  assembly         pixel decode (pixel_array), rescale, slices sorted along the normal, affines
  preprocessing    neurocds-prep/2's recipe with numpy/scipy: resampling onto the 2 mm working
                   grid (trilinear), head mask (threshold, largest component, holes filled),
                   brain (14 mm erosion), robust z per channel, plane bias field divided out,
                   enhancing components (z > 2 on T1c, not a flow void on T2), the crop of
                   32^3 at 2 mm around the lesion with 2x2x2 supersampling
  inference        the five TorchScript members, one forward each, mean, Platt calibration

It is simpler than neurocds where neurocds does more: its lesion finder judges every candidate
against eight rules of normal anatomy (here the first enhancing component of 1 mL or more is
the lesion), it renders key images, and it checks budgets and geometry. So the Python side does
at most the same work; a ratio in neurocds' favour is not flattered by it.

  python bench/reference_pipeline.py DICOMWEB_BASE STUDY_UID [--models models/ensemble]
"""
import io, json, math, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import requests
import scipy.ndimage as ndi
import torch

DICOM_JSON = "application/dicom+json"
MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def text(obj, tag):
    v = obj.get(tag, {}).get("Value")
    return v[0] if v else None


def number(obj, tag):
    v = text(obj, tag)
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


class Reference:
    """One warm process: an HTTP session and the members loaded once, as neurocds holds them."""

    def __init__(self, models):
        manifest = json.loads((Path(models) / "manifest.json").read_text())
        self.manifest = manifest
        # The same intra-op threads as neurocds' engine with the shipped setting (`model.threads =
        # 0`: half the cores, at least one), so that inference compares the code, not the threads.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
        self.members = [torch.jit.load(str(Path(models) / m["file"]), map_location="cpu").eval() for m in manifest["members"]]
        self.shape = manifest["input"]["shape"]
        self.spacing = float(manifest["input"]["spacing_mm"])
        self.http = requests.Session()
        # Warm-up: TorchScript's profiling executor optimises a graph on its first calls, so
        # three forwards per member (neurocds warms its members at start-up too).
        with torch.no_grad():
            x = torch.zeros([1, 2] + self.shape)
            for _ in range(3):
                for m in self.members:
                    m(x)

    # -- series_metadata --------------------------------------------------------------------
    def choose(self, base, study):
        found = self.http.get(f"{base}/studies/{study}/series", headers={"Accept": DICOM_JSON}, timeout=30).json()
        t1c = t2 = None
        for s in found:
            uid = text(s, "0020000E")
            if (text(s, "00080060") or "MR") != "MR":
                continue
            instances = self.http.get(f"{base}/studies/{study}/series/{uid}/metadata", headers={"Accept": DICOM_JSON}, timeout=30).json()
            first = min(instances, key=lambda i: number(i, "00200013") or 1e9)
            tr, te = number(first, "00180080"), number(first, "00180081")
            image_type = first.get("00080008", {}).get("Value", [])
            if tr is None or te is None or "LOCALIZER" in image_type or len(instances) < 12:
                continue
            agent = any(text(i, "00180010") for i in instances)
            inversion = "IR" in first.get("00180020", {}).get("Value", []) or number(first, "00180082") is not None
            if tr < 1500 and te <= 30 and agent and not inversion:
                t1c = uid
            elif tr >= 2000 and 60 <= te <= 200 and not inversion:
                t2 = uid
        if not (t1c and t2):
            raise RuntimeError("no T1c and T2 in the study")
        return t1c, t2

    # -- retrieval --------------------------------------------------------------------------
    def retrieve(self, base, study, series):
        r = self.http.get(f"{base}/studies/{study}/series/{series}", headers={"Accept": MULTIPART}, timeout=60)
        r.raise_for_status()
        ctype = r.headers["Content-Type"]
        boundary = [p.split("=", 1)[1].strip('"') for p in ctype.split(";") if p.strip().startswith("boundary=")][0].encode()
        datasets = []
        for part in r.content.split(b"--" + boundary)[1:]:
            if part.startswith(b"--"):
                break
            head, _, body = part.partition(b"\r\n\r\n")
            datasets.append(pydicom.dcmread(io.BytesIO(body[:-2] if body.endswith(b"\r\n") else body)))
        return datasets

    # -- assembly ---------------------------------------------------------------------------
    @staticmethod
    def volume(datasets):
        iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
        row, col = iop[:3], iop[3:]
        normal = np.cross(row, col)
        datasets = sorted(datasets, key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
        positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
        dz = float(np.median(np.diff(positions @ normal))) if len(datasets) > 1 else 1.0
        ps = [float(v) for v in datasets[0].PixelSpacing]
        data = np.stack([d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1) or 1) + float(getattr(d, "RescaleIntercept", 0) or 0) for d in datasets])
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = row * ps[1], col * ps[0], normal * dz, positions[0]
        return data, affine, (ps[1], ps[0], dz)

    # -- preprocessing ----------------------------------------------------------------------
    def prepare(self, t1, t2):
        (d1, a1, sp1), (d2, a2, _) = t1, t2
        sp = self.spacing
        step = np.array([sp / sp1[0], sp / sp1[1], sp / sp1[2]])
        nk, nj, ni = d1.shape
        dims = (int((nk - 1) / step[2]) + 1, int((nj - 1) / step[1]) + 1, int((ni - 1) / step[0]) + 1)
        c, b, a = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in dims], indexing="ij")
        grid = np.stack([a.ravel() * step[0], b.ravel() * step[1], c.ravel() * step[2], np.ones(a.size)])
        w1 = ndi.map_coordinates(d1, grid[2::-1], order=1, cval=0.0).reshape(dims)
        t2_idx = np.linalg.inv(a2) @ a1 @ grid
        w2 = ndi.map_coordinates(d2, t2_idx[2::-1], order=1, cval=0.0).reshape(dims)
        raw = (w1 > 0.1 * np.percentile(w1, 99)) | (w2 > 0.1 * np.percentile(w2, 99))
        labels, n = ndi.label(raw)
        if n == 0:
            raise RuntimeError("no head")
        head = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        head = ndi.binary_fill_holes(head)
        brain = ndi.distance_transform_edt(head) > 14.0 / sp

        def stats(w):
            q1, med, q3 = np.percentile(w[brain], [25, 50, 75])
            return med, (q3 - q1) / 1.349

        def flatten(w):
            idx = np.argwhere(brain[::2, ::2, ::2] & (w[::2, ::2, ::2] > 0)) * 2
            y = np.log(w[tuple(idx.T)])
            centre, scale = np.array(dims) / 2.0, max(dims) / 2.0
            x = np.column_stack([np.ones(len(idx)), (idx - centre) / scale])
            keep = np.ones(len(y), bool)
            coef = np.zeros(4)
            for _ in range(4):
                coef, *_ = np.linalg.lstsq(x[keep], y[keep], rcond=None)
                res = y - x @ coef
                mad = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep])))
                keep = np.abs(res) <= mad
            kk, jj, ii = np.meshgrid(*[np.arange(n) for n in dims], indexing="ij")
            field = coef[0] + ((kk - centre[0]) * coef[1] + (jj - centre[1]) * coef[2] + (ii - centre[2]) * coef[3]) / scale
            return w * np.exp(-np.clip(field - coef[0], -0.7, 0.7))

        s1, s2 = stats(w1), stats(w2)
        f1, f2 = flatten(w1), flatten(w2)
        (m1, k1), (m2, k2) = stats(f1), stats(f2)
        z1, z2 = (f1 - m1) / k1, (f2 - m2) / k2
        labels, n = ndi.label(brain & (z1 > 2.0) & (z2 >= -2.0))
        voxel_ml = sp ** 3 / 1000.0
        sizes = np.bincount(labels.ravel())
        scores = ndi.sum(z1, labels, index=np.arange(1, n + 1))
        order = [i + 1 for i in np.argsort(-scores) if sizes[i + 1] * voxel_ml >= 1.0]
        if not order:
            raise RuntimeError("out of scope: no enhancing lesion of 1 mL")
        lesion = labels == order[0]
        centroid = np.argwhere(lesion).mean(axis=0)  # (c, b, a)
        centre = (a1 @ np.array([centroid[2] * step[0], centroid[1] * step[1], centroid[0] * step[2], 1.0]))[:3]

        d, h, w = self.shape
        half = lambda n: (n - 1) / 2.0
        zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in (d, h, w)], indexing="ij")
        points = np.stack([centre[0] + (xx.ravel() - half(w)) * sp, centre[1] + (yy.ravel() - half(h)) * sp, centre[2] + (zz.ravel() - half(d)) * sp])
        out = np.zeros((2, d * h * w), np.float32)
        q = sp / 4.0
        for (data, affine, (med, scale)) in ((d1, a1, s1), (d2, a2, s2)):
            inv = np.linalg.inv(affine)
            ch = 0 if data is d1 else 1
            for o in range(8):
                off = np.array([q if o >> bit & 1 else -q for bit in range(3)])
                p = np.vstack([points + off[:, None], np.ones(points.shape[1])])
                idx = (inv @ p)[2::-1]
                inside = np.all((idx >= 0) & (idx <= np.array(data.shape)[:, None] - 1), axis=0)
                v = ndi.map_coordinates(data, idx, order=1, cval=0.0)
                out[ch] += np.clip((np.where(inside, v, 0.0) - med) / scale, -5, 15)
        return (out / 8.0).reshape(2, d, h, w), float(lesion.sum() * voxel_ml)

    # -- inference --------------------------------------------------------------------------
    def infer(self, x):
        cal = self.manifest["calibration"]
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(0)
            probs = [torch.softmax(m(t), dim=1)[0, 1].item() for m in self.members]
        p = min(max(sum(probs) / len(probs), 1e-6), 1 - 1e-6)
        return 1.0 / (1.0 + math.exp(-(cal["a"] * math.log(p / (1 - p)) + cal["b"]))), probs

    def run(self, base, study):
        """The whole analysis of one study; returns the stage timings (ms) and the result."""
        stages, clock = {}, time.perf_counter()

        def lap(name):
            nonlocal clock
            now = time.perf_counter()
            stages[name] = (now - clock) * 1000.0
            clock = now

        t1c, t2 = self.choose(base, study)
        lap("series_metadata")
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lambda s: self.retrieve(base, study, s), [t1c, t2])
        lap("retrieval")
        v1, v2 = self.volume(a), self.volume(b)
        del a, b
        lap("assembly")
        x, lesion_ml = self.prepare(v1, v2)
        lap("preprocessing")
        p, members = self.infer(x)
        lap("inference")
        stages["total"] = sum(stages.values())
        return stages, {"calibrated_probability": p, "member_probabilities": members, "lesion_volume_ml": lesion_ml}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("dicomweb")
    ap.add_argument("study")
    ap.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models" / "ensemble"))
    args = ap.parse_args()
    stages, result = Reference(args.models).run(args.dicomweb.rstrip("/"), args.study)
    print(json.dumps({"stages_ms": stages, **result}, indent=1))
