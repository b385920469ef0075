#!/usr/bin/env python3
"""Warm neurocds before anyone orders: follow Orthanc's change feed and, for each study that
becomes stable (no new instance for Orthanc's StableAge), look up its ImagingStudy (and the
Endpoints it names) on the EHR's FHIR server and send them to neurocds'
POST /notifications/imaging-study, which queues the analysis at back-fill priority. The
clinician's order-select then finds the result ready.

The feed is a trusted CDS client of neurocds: it signs a fresh JWT per notification with its own
key (registered under [[trust.clients]] like an EHR), `aud` the notification URL.

  orthanc_feed.py --orthanc URL --fhir URL --neurocds URL --keys DIR --iss ISS
                  [--state FILE] [--once] [--interval S]

--state keeps the last change seen, so a restart resumes where it stopped (without it, the feed
starts from the end of the change log: only studies that become stable from now on). --once
reads what is there and exits (tests, cron). One JSON line per study is printed.
"""

import argparse, json, os, subprocess, sys, time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = "/notifications/imaging-study"


def token(keys, iss, aud):
    out = subprocess.run([sys.executable, os.path.join(HERE, "ehr_token.py"), "sign", "--dir", keys, "--iss", iss, "--aud", aud],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def imaging_study_bundle(fhir, study_uid, fhir_token):
    """The EHR's ImagingStudy for the DICOM study, with its Endpoints; None if it has none yet."""
    headers = {"Accept": "application/fhir+json"}
    if fhir_token:
        headers["Authorization"] = f"Bearer {fhir_token}"
    r = requests.get(f"{fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}", "_include": "ImagingStudy:endpoint"},
                     headers=headers, timeout=30)
    r.raise_for_status()
    bundle = r.json()
    if not any(e.get("resource", {}).get("resourceType") == "ImagingStudy" for e in bundle.get("entry", [])):
        return None
    return bundle


def notify(a, study_uid):
    bundle = imaging_study_bundle(a.fhir, study_uid, a.fhir_token)
    if bundle is None:
        return {"study_uid": study_uid, "status": "no-imaging-study", "reason": "the EHR has no ImagingStudy for it yet"}
    url = a.neurocds.rstrip("/") + PATH
    r = requests.post(url, json=bundle, headers={"Authorization": f"Bearer {token(a.keys, a.iss, url)}", "Content-Type": "application/fhir+json"},
                      timeout=30)
    if r.status_code != 202:
        return {"study_uid": study_uid, "status": f"http-{r.status_code}", "reason": r.text[:300]}
    answers = r.json().get("studies", [])
    return answers[0] if answers else {"study_uid": study_uid, "status": "none"}


def changes(orthanc, since):
    r = requests.get(f"{orthanc}/changes", params={"since": since, "limit": 100}, timeout=30)
    r.raise_for_status()
    return r.json()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orthanc", required=True, help="Orthanc's REST API, e.g. http://127.0.0.1:8042")
    p.add_argument("--fhir", required=True, help="the EHR's FHIR base URL")
    p.add_argument("--fhir-token", default="", help="a bearer token for the FHIR server, if it wants one")
    p.add_argument("--neurocds", required=True, help="neurocds' public base URL")
    p.add_argument("--keys", required=True, help="the feed's key directory (ehr_token.py keygen)")
    p.add_argument("--iss", required=True, help="the feed's issuer, as registered in neurocds' [[trust.clients]]")
    p.add_argument("--state", help="a file keeping the last change seen")
    p.add_argument("--since", type=int, help="start after this change (overrides --state)")
    p.add_argument("--once", action="store_true", help="read the feed once and exit")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between reads of the feed")
    a = p.parse_args()

    if a.since is not None:
        since = a.since
    elif a.state and os.path.exists(a.state):
        since = int(open(a.state).read().strip() or 0)
    else:
        since = requests.get(f"{a.orthanc}/changes", params={"last": ""}, timeout=30).json().get("Last", 0)
    while True:
        page = changes(a.orthanc, since)
        for change in page.get("Changes", []):
            if change.get("ChangeType") == "StableStudy":
                tags = requests.get(f"{a.orthanc}/studies/{change['ID']}", timeout=30).json().get("MainDicomTags", {})
                uid = tags.get("StudyInstanceUID")
                if uid:
                    print(json.dumps(notify(a, uid)), flush=True)
        since = page.get("Last", since)
        if a.state:
            with open(a.state, "w") as f:
                f.write(str(since))
        if page.get("Done", True):
            if a.once:
                return
            time.sleep(a.interval)


if __name__ == "__main__":
    main()
