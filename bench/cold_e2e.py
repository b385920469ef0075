"""Cold end-to-end benchmark (issue: order-select to a finished decision < 5 s on 2 cores).

For each freshly loaded patient (a study no hook has seen, so nothing is cached): sends
order-select (which starts the analysis and answers at once), then order-sign (which waits for
the result within its budget), and reports the wall time from order-select sent to order-sign
answered, plus the per-stage timings the service recorded in the audit trail for that decision.

  python bench/cold_e2e.py LOADED_JSONL SERVICE_BASE KEYS_DIR ISS FHIR_BASE DATABASE_URL [RESULTS_JSON]

LOADED_JSONL is what `scripts/demo_ehr.py load` printed for the patients to use.
"""
import json, statistics, subprocess, sys, time, uuid
from pathlib import Path

import jwt, requests

loaded, base, keys, iss, fhir, database_url = sys.argv[1:7]
keys = Path(keys)
kid = sorted(p.stem for p in (keys / "keys").glob("*.pem"))[0]
pem = (keys / "keys" / f"{kid}.pem").read_bytes()


def token(aud):
    now = int(time.time())
    return jwt.encode({"iss": iss, "aud": aud, "iat": now, "exp": now + 280, "jti": str(uuid.uuid4())}, pem,
                      algorithm="ES384", headers={"kid": kid, "typ": "JWT"})


def body(hook, patient, instance):
    order = {"resourceType": "ServiceRequest", "id": "mri-order-1", "status": "draft", "intent": "order",
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70553"}]},
             "subject": {"reference": f"Patient/{patient}"}}
    b = {"hook": hook, "hookInstance": instance, "fhirServer": fhir,
         "context": {"userId": "Practitioner/bench", "patientId": patient,
                     "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}}}
    if hook == "order-select":
        b["context"]["selections"] = ["ServiceRequest/mri-order-1"]
    return b


def stage_timings(instance):
    sql = f"SELECT stage_timings_ms::text FROM decisions WHERE hook_instance = '{instance}' ORDER BY seq DESC LIMIT 1"
    out = subprocess.run(["psql", database_url, "-At", "-c", sql], capture_output=True, text=True, check=True).stdout.strip()
    return json.loads(out) if out else {}


session = requests.Session()
rows, walls = [], []
for line in Path(loaded).read_text().splitlines():
    patient = json.loads(line)["patient_id"]
    urls = {h: f"{base}/cds-services/neurocds-brain-mri-{h}" for h in ("order-select", "order-sign")}
    toks = {h: token(u) for h, u in urls.items()}
    sign_instance = str(uuid.uuid4())
    t0 = time.perf_counter()
    r1 = session.post(urls["order-select"], json=body("order-select", patient, str(uuid.uuid4())), headers={"Authorization": f"Bearer {toks['order-select']}"}, timeout=30)
    t_select = time.perf_counter() - t0
    r2 = session.post(urls["order-sign"], json=body("order-sign", patient, sign_instance), headers={"Authorization": f"Bearer {toks['order-sign']}"}, timeout=30)
    wall = time.perf_counter() - t0
    cards = (r2.json() if r2.content else {}).get("cards", [])
    summary = cards[0]["summary"] if cards else f"HTTP {r2.status_code}, no card"
    stages = stage_timings(sign_instance)
    walls.append(wall)
    rows.append((patient, r1.status_code, t_select, wall, stages, summary))

names = ["series_metadata", "series_selection", "retrieval", "assembly", "preprocessing", "inference"]
print("| patient | order-select answered | order-select → decision | " + " | ".join(names) + " | card |")
print("|---|---|---|" + "---|" * len(names) + "---|")
for patient, status, t_select, wall, stages, summary in rows:
    cells = " | ".join(f"{stages[n]} ms" if n in stages else "—" for n in names)
    print(f"| {patient} | {status} in {t_select * 1000:.0f} ms | {wall * 1000:.0f} ms | {cells} | {summary[:60]} |")
if walls:
    print(f"\ncold order-select → decision over {len(walls)} studies: median {statistics.median(walls) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms")
if len(sys.argv) > 7 and walls:
    # Figures for bench/compare.py, merged into the results file scripts/bench.sh started.
    out = Path(sys.argv[7])
    results = json.loads(out.read_text()) if out.exists() else {"metrics": {}}
    results["metrics"]["cold_e2e_median_ms"] = {"value": statistics.median(walls) * 1000, "better": "lower", "unit": "ms"}
    out.write_text(json.dumps(results, indent=1))
