#!/usr/bin/env python3
"""Writes the DICOM fixtures of the imaging and DICOMweb tests into OUT_DIR, plus OUT_DIR/manifest.json.

Run by the tests themselves (tests/support/dicom_fixtures.rs) with the tools venv:
    ~/.cache/neurocds/tools-venv/bin/python scripts/testdata/make_dicom_fixtures.py OUT_DIR

Sources (all real, none of ours):
  * nilearn's MNI ICBM152 2009a T1 template (1 mm, 197x233x189), resampled with scipy into MR
    series of several geometries: axial, a 20-degree oblique (tilted) stack, and a sagittal
    enhanced multi-frame (Enhanced MR Image Storage, per-frame functional groups). The "T2" and
    "FLAIR" series are the same anatomy with inverted intensities: stand-ins whose headers are
    realistic, because no registry ships a real T2 series (see test-peers-research.md section 4).
  * pydicom's MR_small*.dcm (one 64x64 MR slice in several transfer syntaxes), stacked into
    3-slice series by shifting ImagePositionPatient along the slice normal, the encoded pixel
    data left untouched.
  * nibabel's Siemens DTI mosaic 0.dcm (one real single-instance series).

Every run makes new UIDs, so the fixtures can be uploaded to a shared Orthanc again and again.
manifest.json lists, per series, its UIDs, files, geometry and the sum of the rescaled pixel
values as decoded by pydicom (null where pydicom lacks the codec): an independent decoder that
the tests compare with ours.
"""

import copy
import json
import os
import shutil
import sys

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)
from scipy.ndimage import map_coordinates

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SITE = os.path.dirname(nib.__file__).rsplit("/nibabel", 1)[0]
MNI = os.path.join(SITE, "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")


def unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


class Template:
    """The MNI T1 template, sampled at LPS positions."""

    def __init__(self):
        img = nib.load(MNI)
        self.data = np.asarray(img.get_fdata(), dtype=np.float32)
        self.affine = img.affine
        self.inv = np.linalg.inv(img.affine)
        centre_ras = img.affine @ np.append((np.array(self.data.shape) - 1) / 2.0, 1.0)
        # Off-centre on purpose: the template is left-right symmetric, and a grid centred on
        # its midline would hide a left-right flip from the dcm2niix comparison.
        self.centre_lps = centre_ras[:3] * np.array([-1.0, -1.0, 1.0]) + np.array([7.3, -4.1, 3.0])

    def sample(self, geo):
        """Values on the grid of `geo`, shaped [slice, row, column]."""
        n, rows, cols = geo["slices"], geo["rows"], geo["cols"]
        row, col, step = geo["row"], geo["col"], geo["step"]
        k, r, c = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
        lps = (geo["origin"] + k[..., None] * step + c[..., None] * geo["dc"] * row + r[..., None] * geo["dr"] * col)
        ras = lps * np.array([-1.0, -1.0, 1.0])
        vox = ras.reshape(-1, 3) @ self.inv[:3, :3].T + self.inv[:3, 3]
        vals = map_coordinates(self.data, vox.T, order=1, cval=0.0)
        return vals.reshape(n, rows, cols)


def geometry(template, row, col, slices, rows, cols, dr, dc, spacing):
    row, col = unit(row), unit(col)
    normal = np.cross(row, col)
    step = normal * spacing
    origin = (template.centre_lps - (cols - 1) / 2.0 * dc * row - (rows - 1) / 2.0 * dr * col - (slices - 1) / 2.0 * step)
    return dict(row=row, col=col, step=step, origin=origin, slices=slices, rows=rows, cols=cols, dr=dr, dc=dc, spacing=spacing)


def file_meta(sop_class, sop_uid, ts=ExplicitVRLittleEndian):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def common(ds, study, spec, sop_class, sop_uid):
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = "NEUROCDS^FIXTURE"
    ds.PatientID = "NEUROCDS-FIXTURE"
    ds.StudyInstanceUID = study["uid"]
    ds.StudyDate = "20260101"
    ds.StudyTime = "100000"
    ds.AccessionNumber = "FIX1"
    ds.StudyID = "1"
    ds.Modality = "MR"
    ds.Manufacturer = spec.get("manufacturer", "SIEMENS")
    ds.SeriesInstanceUID = spec["series_uid"]
    ds.SeriesNumber = spec["number"]
    ds.SeriesDescription = spec["description"]
    ds.SeriesTime = spec["time"]
    ds.AcquisitionTime = spec["time"]
    ds.FrameOfReferenceUID = study["frame_of_reference"]
    ds.ImageType = spec.get("image_type", ["ORIGINAL", "PRIMARY", "M", "ND"])
    ds.ContrastBolusAgent = spec.get("agent", "")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def mr_timing(ds, spec):
    ds.ScanningSequence = spec["scanning_sequence"]
    ds.SequenceVariant = spec.get("sequence_variant", ["SP"])
    ds.MRAcquisitionType = spec["acquisition"]
    ds.RepetitionTime = spec["tr"]
    ds.EchoTime = spec["te"]
    if "ti" in spec:
        ds.InversionTime = spec["ti"]


def stored(values, slope, intercept):
    """Values as 12-bit stored integers under the given rescale."""
    return np.clip(np.round((values - intercept) / slope), 0, 4095).astype(np.uint16)


def classic_series(out, study, spec, template):
    geo = spec["geometry"]
    values = template.sample(geo) * spec.get("scale", 16.0)
    if spec.get("invert"):
        values = np.where(values > 40, 4000 - values, 0)
    slope, intercept = spec.get("rescale", (1.0, 0.0))
    pixels = stored(values, slope, intercept)
    folder = os.path.join(out, spec["name"])
    os.makedirs(folder)
    files = []
    for k in range(geo["slices"]):
        sop = generate_uid()
        ds = FileDataset(None, {}, file_meta=file_meta(MR_IMAGE, sop), preamble=b"\0" * 128)
        common(ds, study, spec, MR_IMAGE, sop)
        mr_timing(ds, spec)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(float(x), 4) for x in geo["origin"] + k * geo["step"]]
        ds.ImageOrientationPatient = [round(float(x), 6) for x in np.concatenate([geo["row"], geo["col"]])]
        ds.PixelSpacing = [geo["dr"], geo["dc"]]
        ds.SliceThickness = spec.get("thickness", geo["spacing"])
        ds.Rows, ds.Columns = geo["rows"], geo["cols"]
        if (slope, intercept) != (1.0, 0.0):
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
        ds.PixelData = pixels[k].tobytes()
        path = os.path.join(folder, f"{k + 1:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return entry(spec, files, geo, float((pixels.astype(np.float64) * slope + intercept).sum()))


def enhanced_series(out, study, spec, template):
    geo = spec["geometry"]
    pixels = stored(template.sample(geo) * spec.get("scale", 16.0), *spec["rescale"])
    slope, intercept = spec["rescale"]
    folder = os.path.join(out, spec["name"])
    os.makedirs(folder)
    sop = generate_uid()
    ds = FileDataset(None, {}, file_meta=file_meta(ENHANCED_MR_IMAGE, sop), preamble=b"\0" * 128)
    common(ds, study, spec, ENHANCED_MR_IMAGE, sop)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20260101", spec["time"]
    ds.AcquisitionDateTime = "20260101" + spec["time"]
    ds.EchoPulseSequence = "GRADIENT"
    ds.InversionRecovery = "YES"
    ds.MRAcquisitionType = "3D"
    ds.NumberOfFrames = geo["slices"]
    ds.Rows, ds.Columns = geo["rows"], geo["cols"]

    measures = Dataset()
    measures.PixelSpacing = [geo["dr"], geo["dc"]]
    measures.SliceThickness = geo["spacing"]
    orientation = Dataset()
    orientation.ImageOrientationPatient = [round(float(x), 6) for x in np.concatenate([geo["row"], geo["col"]])]
    timing = Dataset()
    timing.RepetitionTime = spec["tr"]
    timing.FlipAngle = 8
    echo = Dataset()
    echo.EffectiveEchoTime = spec["te"]
    modifier = Dataset()
    modifier.InversionTimes = [spec["ti"]]
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, intercept, "US"
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    shared.MRTimingAndRelatedParametersSequence = [timing]
    shared.MREchoSequence = [echo]
    shared.MRModifierSequence = [modifier]
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    # Frames are written in reverse slice order: the reader must sort by position.
    order = list(range(geo["slices"]))[::-1]
    for k in order:
        position = Dataset()
        position.ImagePositionPatient = [round(float(x), 4) for x in geo["origin"] + k * geo["step"]]
        content = Dataset()
        content.InStackPositionNumber = k + 1
        content.StackID = "1"
        content.DimensionIndexValues = [1, k + 1]
        fg = Dataset()
        fg.PlanePositionSequence = [position]
        fg.FrameContentSequence = [content]
        per_frame.append(fg)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.ascontiguousarray(pixels[order]).tobytes()
    path = os.path.join(folder, "0001.dcm")
    ds.save_as(path, enforce_file_format=True)
    return entry(spec, [path], geo, float((pixels.astype(np.float64) * slope + intercept).sum()))


def entry(spec, files, geo, pixel_sum):
    return {
        "name": spec["name"],
        "series_uid": spec["series_uid"],
        "description": spec["description"],
        "dir": os.path.dirname(files[0]),
        "files": files,
        "slices": geo["slices"],
        "rows": geo["rows"],
        "cols": geo["cols"],
        "spacing": [geo["dc"], geo["dr"], geo["spacing"]],
        "pixel_sum": pixel_sum,
        "expected_class": spec.get("expected_class"),
    }


def mr_small_series(out, study, name, source, ts=None):
    """Three slices of pydicom's MR_small in one transfer syntax, encoded pixel data as is."""
    folder = os.path.join(out, name)
    os.makedirs(folder)
    series_uid = generate_uid()
    files, total = [], 0.0
    for k in range(3):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file(source))
        if ts is not None:
            ds.file_meta.TransferSyntaxUID = ts
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.StudyInstanceUID = study["uid"]
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = f"MR_small {name}"
        ds.SeriesNumber = 100 + len(study["ts_series"])
        ds.InstanceNumber = k + 1
        ds.PatientID = "NEUROCDS-FIXTURE"
        ds.FrameOfReferenceUID = study["frame_of_reference"]
        ipp = np.array([float(x) for x in ds.ImagePositionPatient])
        iop = [float(x) for x in ds.ImageOrientationPatient]
        normal = np.cross(iop[:3], iop[3:])
        ds.ImagePositionPatient = [round(float(x), 4) for x in ipp + k * 5.0 * normal]
        path = os.path.join(folder, f"{k + 1:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        if total is not None:
            try:
                arr = ds.pixel_array.astype(np.float64)
                total += float((arr * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))).sum())
            except Exception:  # no codec in this venv (JPEG 2000, JPEG-LS): no reference sum
                total = None
    study["ts_series"].append({
        "name": name,
        "series_uid": series_uid,
        "transfer_syntax": str(pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID),
        "dir": folder,
        "files": files,
        "slices": 3,
        "rows": 64,
        "cols": 64,
        "pixel_sum": total,
    })


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    template = Template()
    study = {"uid": generate_uid(), "frame_of_reference": generate_uid(), "ts_series": []}
    axial = ([1, 0, 0], [0, 1, 0])
    tilt = np.radians(20.0)
    oblique = ([1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)])
    sagittal = ([0, 1, 0], [0, 0, -1])
    coronal = ([1, 0, 0], [0, 0, -1])
    mprage = dict(scanning_sequence=["GR", "IR"], sequence_variant=["SP", "MP"], acquisition="3D", tr=2300.0, te=2.3, ti=900.0)
    specs = [
        dict(name="localizer", description="localizer", number=1, time="100000", geometry=geometry(template, *axial, 3, 128, 128, 2.0, 2.0, 30.0),
             scanning_sequence=["GR"], acquisition="2D", tr=8.6, te=4.0, expected_class="localizer"),
        dict(name="t1_pre", description="t1_mprage_tra", number=2, time="100500", geometry=geometry(template, *axial, 48, 160, 144, 1.2, 1.2, 3.0),
             expected_class="t1-pre", **mprage),
        dict(name="t2_axial", description="t2_tse_tra", number=3, time="101000", geometry=geometry(template, *axial, 32, 160, 144, 1.2, 1.2, 5.0),
             scanning_sequence=["SE"], acquisition="2D", tr=4000.0, te=100.0, invert=True, expected_class="t2"),
        dict(name="flair", description="t2_tirm_tra_dark-fluid", number=4, time="101500", geometry=geometry(template, *axial, 24, 128, 112, 1.5, 1.5, 6.0),
             scanning_sequence=["SE", "IR"], acquisition="2D", tr=9000.0, te=81.0, ti=2500.0, invert=True, thickness=5.0, expected_class="flair"),
        dict(name="t1c_axial", description="t1_mprage_tra_post", number=5, time="102000", agent="Gadovist",
             geometry=geometry(template, *axial, 64, 192, 160, 1.0, 1.1, 2.5), rescale=(1.5, -10.0), expected_class="t1-post-contrast", **mprage),
        dict(name="t1c_tilted", description="t1_mprage_tra_obl_post", number=6, time="102500", agent="Gadovist",
             geometry=geometry(template, *oblique, 40, 160, 144, 1.2, 1.2, 3.0), expected_class="t1-post-contrast", **mprage),
        dict(name="t1c_mpr_cor", description="t1_mprage_cor_post MPR", number=7, time="103000", agent="Gadovist", image_type=["DERIVED", "SECONDARY", "MPR"],
             geometry=geometry(template, *coronal, 24, 128, 128, 1.5, 1.5, 5.0), expected_class="derived", **mprage),
    ]
    entries = []
    for spec in specs:
        spec["series_uid"] = generate_uid()
        entries.append(classic_series(out, study, spec, template))
    enhanced = dict(name="t1c_enhanced_sag", description="T1W_3D_TFE+C", number=8, time="103500", manufacturer="Philips Medical Systems",
                    series_uid=generate_uid(), geometry=geometry(template, *sagittal, 40, 160, 160, 1.2, 1.2, 3.5), rescale=(2.0, -100.0),
                    tr=8.1, te=3.7, ti=900.0, expected_class="t1-post-contrast")
    entries.append(enhanced_series(out, study, enhanced, template))

    for name, source, ts in [
        ("explicit_le", "MR_small.dcm", None),
        ("implicit_le", "MR_small_implicit.dcm", None),
        ("big_endian", "MR_small_bigendian.dcm", None),
        ("deflate", "MR_small.dcm", DeflatedExplicitVRLittleEndian),
        ("rle", "MR_small_RLE.dcm", None),
        ("jpeg2000_lossless", "MR_small_jp2klossless.dcm", None),
        ("jpeg_ls_lossless", "MR_small_jpeg_ls_lossless.dcm", None),
    ]:
        mr_small_series(out, study, name, source, ts)

    # nibabel's real Siemens DTI mosaic: a one-instance series.
    mosaic_dir = os.path.join(out, "siemens_mosaic")
    os.makedirs(mosaic_dir)
    mosaic = os.path.join(mosaic_dir, "0.dcm")
    shutil.copy(os.path.join(SITE, "nibabel/tests/data/0.dcm"), mosaic)

    manifest = {
        "study_uid": study["uid"],
        "series": entries,
        "transfer_syntax_series": study["ts_series"],
        "siemens_mosaic": mosaic,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
