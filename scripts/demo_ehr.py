#!/usr/bin/env python3
"""Plays the hospital around neurocds: the PACS upload, the EHR's FHIR records and the EHR's
CDS Hooks calls. Used by the demo (`make demo`) and by the end-to-end tests.

Run with the tools venv (~/.cache/neurocds/tools-venv/bin/python):

  load  --cohort DIR --orthanc URL --dicomweb URL --fhir URL [--patient ID ...]
        Uploads each patient's DICOM study (from `neurocds-lab synth`) to Orthanc, then writes the
        patient's Patient, Endpoint and ImagingStudy (series read back over QIDO-RS) to the
        FHIR server. Prints one JSON line per patient: {patient_id, label, study_uid, ...}.
  hook  --service URL --keys DIR --iss ISS --hook order-select|order-sign --patient ID
        --fhir URL [--token T] [--prefetch]
        Sends one signed hook call for a brain MRI order (CPT 70553) and prints the JSON answer.
"""
import argparse, datetime, glob, json, os, subprocess, sys, uuid

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def manifest_rows(cohort):
    path = os.path.join(cohort, "manifest.json")
    with open(path) as f:
        data = json.load(f)
    return data["patients"] if isinstance(data, dict) and "patients" in data else data


def upload_study(orthanc, study_dir):
    files = sorted(glob.glob(os.path.join(study_dir, "**", "*.dcm"), recursive=True))
    if not files:
        raise SystemExit(f"no DICOM files under {study_dir}")
    s = requests.Session()
    for f in files:
        with open(f, "rb") as fh:
            r = s.post(f"{orthanc}/instances", data=fh.read(), headers={"Content-Type": "application/dicom"}, timeout=60)
            r.raise_for_status()
    return len(files)


def qido_series(dicomweb, study_uid):
    r = requests.get(f"{dicomweb}/studies/{study_uid}/series", headers={"Accept": "application/dicom+json"}, timeout=30)
    r.raise_for_status()
    out = []
    for s in r.json():
        v = lambda tag: (s.get(tag, {}).get("Value") or [None])[0]
        out.append({"uid": v("0020000E"), "number": v("00200011"), "modality": v("00080060"),
                    "description": v("0008103E"), "instances": v("00201209")})
    return out


def fhir_put(fhir, resource, token=None):
    headers = {"Content-Type": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{fhir}/{resource['resourceType']}/{resource['id']}"
    r = requests.put(url, data=json.dumps(resource), headers=headers, timeout=30)
    if r.status_code >= 300:
        raise SystemExit(f"PUT {url}: {r.status_code} {r.text[:300]}")


def load(a):
    rows = manifest_rows(a.cohort)
    if a.patient:
        rows = [r for r in rows if r["patient_id"] in a.patient]
    for row in rows:
        pid = row["patient_id"]
        n = upload_study(a.orthanc, os.path.join(a.cohort, row["study_dir"]))
        series = qido_series(a.dicomweb, row["study_uid"])
        fid = pid.lower().replace("_", "-")
        fhir_put(a.fhir, {"resourceType": "Patient", "id": fid, "gender": {"M": "male", "F": "female"}.get(row["sex"], "unknown"),
                          "identifier": [{"system": "urn:neurocds:synthetic", "value": pid}]}, a.token)
        fhir_put(a.fhir, {"resourceType": "Endpoint", "id": "pacs", "status": "active",
                          "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs"},
                          "payloadType": [{"text": "DICOM"}], "address": a.dicomweb}, a.token)
        fhir_put(a.fhir, {
            "resourceType": "ImagingStudy", "id": f"mr-{fid}", "status": "available",
            "subject": {"reference": f"Patient/{fid}"},
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{row['study_uid']}"}],
            "modality": [{"system": DCM, "code": "MR"}],
            # The cohort spreads acquisition dates over years (for the temporal split); in the
            # EHR's timeline the demo's prior MR is recent, inside the service's look-back.
            "started": (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=a.prior_days)).strftime("%Y-%m-%dT09:00:00Z"),
            "description": "MRI BRAIN WITHOUT AND WITH CONTRAST",
            "endpoint": [{"reference": "Endpoint/pacs"}],
            "numberOfSeries": len(series),
            "series": [{"uid": s["uid"], "number": s["number"], "modality": {"system": DCM, "code": s["modality"] or "MR"},
                        "description": s["description"] or "", "numberOfInstances": s["instances"]} for s in series],
        }, a.token)
        print(json.dumps({"patient_id": fid, "label": row["label"], "study_uid": row["study_uid"], "instances": n,
                          "series": len(series), "phenotype": row.get("phenotype")}), flush=True)


def sign(keys, iss, aud):
    out = subprocess.run([sys.executable, os.path.join(HERE, "ehr_token.py"), "sign", "--dir", keys, "--iss", iss, "--aud", aud],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def hook(a):
    sid = {"order-select": "neurocds-brain-mri-order-select", "order-sign": "neurocds-brain-mri-order-sign"}[a.hook]
    url = f"{a.service.rstrip('/')}/cds-services/{sid}"
    order = {"resourceType": "ServiceRequest", "id": "mri-order-1", "status": "draft", "intent": "order",
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70553", "display": "MRI brain without and with contrast"}]},
             "subject": {"reference": f"Patient/{a.patient}"}}
    body = {"hook": a.hook, "hookInstance": a.hook_instance or str(uuid.uuid4()), "fhirServer": a.fhir,
            "context": {"userId": "Practitioner/demo-neurologist", "patientId": a.patient,
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}}}
    if a.hook == "order-select":
        body["context"]["selections"] = ["ServiceRequest/mri-order-1"]
    if a.token:
        body["fhirAuthorization"] = {"access_token": a.token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/Patient.read patient/ImagingStudy.read patient/Endpoint.read", "subject": "neurocds"}
    r = requests.post(url, json=body, headers={"Authorization": f"Bearer {sign(a.keys, a.iss, url)}"}, timeout=30)
    answer = r.json() if r.content else None
    if a.record:
        # What the EHR shows: the stand-in page (scripts/oidc_provider.mjs, GET /ehr) reads this.
        try:
            shown = json.load(open(a.record))
        except (OSError, ValueError):
            shown = []
        shown = [e for e in shown if e["patient"]["id"] != a.patient]
        shown.append({"patient": {"id": a.patient, "name": f"Demo patient {a.patient}"},
                      "order": "MRI brain without and with contrast (CPT 70553)", "cards": (answer or {}).get("cards", [])})
        with open(a.record, "w") as f:
            json.dump(shown, f)
    if not a.pretty:
        print(json.dumps({"status": r.status_code, "body": answer}))
        return
    cards = (answer or {}).get("cards", [])
    print(f"  HTTP {r.status_code}, {len(cards)} card(s)")
    for c in cards:
        print("  ┌ " + c["summary"])
        print("  │ indicator: " + c["indicator"])
        for line in c.get("detail", "").splitlines():
            print("  │ " + line)
        for s in c.get("suggestions", []):
            print("  │ suggestion: " + s["label"])
        for link in c.get("links", []):
            if link["type"] == "smart":
                print("  └ case report: a SMART launch from the EHR's card (open the EHR page below)")
            else:
                print("  └ case report: " + link["url"])


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("load")
    for k in ("--cohort", "--orthanc", "--dicomweb", "--fhir"):
        l.add_argument(k, required=True)
    l.add_argument("--patient", action="append")
    l.add_argument("--token")
    l.add_argument("--prior-days", type=int, default=14, help="how long before today the prior MR was done")
    h = sub.add_parser("hook")
    for k in ("--service", "--keys", "--iss", "--hook", "--patient", "--fhir"):
        h.add_argument(k, required=True)
    h.add_argument("--token")
    h.add_argument("--hook-instance")
    h.add_argument("--pretty", action="store_true", help="print the cards for a person")
    h.add_argument("--record", help="keep the patient's cards in this JSON file (the EHR page shows them)")
    a = ap.parse_args()
    {"load": load, "hook": hook}[a.cmd](a)


if __name__ == "__main__":
    main()
