"""Workers benchmark (issue 17): analyses per minute with 1 and 2 `neurocds worker` processes,
and the cached hook's latency at 16 connections while they back-fill.

Each round (1 worker, then 2) gets a fresh database, a `neurocds serve` with no embedded worker
(port 8095), and its workers. One study is analysed first (so that a brain order has a cached
analysis), then every other study is announced at once through POST /notifications/imaging-study
(back-fill priority). wrk measures the cached brain hook for 10 s before the back-fill (idle) and
for 10 s from its start (busy); the analyses per minute count the back-fill from its announcement
to its last result.

  python bench/workers.py LOADED_JSONL NEUROCDS_BIN DEMO_TOML KEYS_DIR ISS FHIR PG_ADMIN_URL OUT_DIR [NICE]

NICE (default 0) starts the workers under `nice -n NICE`: on a machine they share with `serve`,
the hook path then comes first.
"""
import glob, json, os, re, subprocess, sys, time, uuid
from pathlib import Path

import jwt, requests

loaded, binary, demo_toml, keys, iss, fhir, admin_url, out = sys.argv[1:9]
NICE = int(sys.argv[9]) if len(sys.argv) > 9 else 0
out = Path(out)
PORT = 8095
BASE = f"http://127.0.0.1:{PORT}"
HERE = Path(__file__).resolve().parent
keys = Path(keys)
kid = sorted(p.stem for p in (keys / "keys").glob("*.pem"))[0]
pem = (keys / "keys" / f"{kid}.pem").read_bytes()
rows = [json.loads(l) for l in open(loaded) if l.strip()]


def token(aud):
    now = int(time.time())
    return jwt.encode({"iss": iss, "aud": aud, "iat": now, "exp": now + 280, "jti": str(uuid.uuid4())}, pem,
                      algorithm="ES384", headers={"kid": kid, "typ": "JWT"})


def bundle_for(study_uid):
    return requests.get(f"{fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}", "_include": "ImagingStudy:endpoint"},
                        timeout=30).json()


def announce(study_uid):
    url = f"{BASE}/notifications/imaging-study"
    r = requests.post(url, json=bundle_for(study_uid), headers={"Authorization": f"Bearer {token(url)}"}, timeout=30)
    r.raise_for_status()


def wait_ready(url, seconds=120):
    end = time.time() + seconds
    while time.time() < end:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


PSQL = (sorted(glob.glob("/usr/lib/postgresql/*/bin/psql")) or ["psql"])[-1]


def sql(url, statement):
    return subprocess.run([PSQL, url, "-At", "-c", statement], capture_output=True, text=True, check=True).stdout.strip()


def done_count(db_url):
    return int(sql(db_url, "SELECT count(*) FROM analyses WHERE state = 'done'") or 0)


def wrk(body_file, tokens_file, seconds=10):
    url = f"{BASE}/cds-services/neurocds-brain-mri-order-sign"
    r = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(HERE / "cds_load.lua"), url, "--", str(tokens_file), str(body_file)],
                       capture_output=True, text=True)
    m = re.search(r"requests=(\d+) errors_status=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) rps=([\d.]+)", r.stdout)
    return {"requests": int(m[1]), "non_2xx": int(m[2]), "p50_ms": float(m[3]), "p99_ms": float(m[4]), "rps": float(m[5])} if m else {"error": r.stdout + r.stderr}


def hook_body(patient, prior):
    order = {"resourceType": "ServiceRequest", "id": "o1", "status": "draft", "intent": "order",
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70553"}]}, "subject": {"reference": f"Patient/{patient}"}}
    return {"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/bench", "patientId": patient,
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}},
            "prefetch": {"patient": None, "priorImaging": prior}}


def round_with(workers):
    name = f"neurocds_bench_workers_{int(time.time())}_{workers}"
    sql(admin_url, f"CREATE DATABASE {name}")
    db_url = admin_url.rsplit("/", 1)[0] + "/" + name
    env = dict(os.environ, NEUROCDS_CONFIG=demo_toml, DATABASE_URL=db_url, NEUROCDS_SERVER__LISTEN=f"127.0.0.1:{PORT}",
               NEUROCDS_SERVER__PUBLIC_BASE_URL=BASE, NEUROCDS_WORKER__EMBEDDED="false")
    procs = [subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=open(out / f"serve-{workers}.log", "w"))]
    try:
        wait_ready(f"{BASE}/readyz")
        for i in range(workers):
            wenv = dict(env, NEUROCDS_WORKER__LISTEN=f"127.0.0.1:{9475 + i}")
            procs.append(subprocess.Popen(["nice", "-n", str(NICE), binary, "worker"], env=wenv, stdout=subprocess.DEVNULL, stderr=open(out / f"worker-{workers}-{i}.log", "w")))
            wait_ready(f"http://127.0.0.1:{9475 + i}/readyz")
        # One study analysed first: the brain order the hook load asks about.
        first, rest = rows[0], rows[1:]
        announce(first["study_uid"])
        while done_count(db_url) < 1:
            time.sleep(0.1)
        prior = bundle_for(first["study_uid"])
        body_file = out / "hook.json"
        body_file.write_text(json.dumps(hook_body(first["patient_id"], prior)))
        tokens_file = out / "tokens.txt"
        url = f"{BASE}/cds-services/neurocds-brain-mri-order-sign"
        with open(tokens_file, "w") as f:
            subprocess.run([sys.executable, str(HERE / "sign_many.py"), str(keys), iss, url, "60000"], stdout=f, check=True)
        idle = wrk(body_file, tokens_file)
        with open(tokens_file, "w") as f:
            subprocess.run([sys.executable, str(HERE / "sign_many.py"), str(keys), iss, url, "60000"], stdout=f, check=True)
        started = time.time()
        for r in rest:
            announce(r["study_uid"])
        busy = wrk(body_file, tokens_file)
        while done_count(db_url) < len(rows):
            if time.time() - started > 600:
                raise SystemExit("the back-fill did not finish in 10 minutes")
            time.sleep(0.2)
        took = time.time() - started
        return {"workers": workers, "nice": NICE, "studies": len(rest), "seconds": round(took, 1), "per_minute": round(len(rest) / took * 60, 1),
                "hook_idle": idle, "hook_during_backfill": busy}
    finally:
        for p in procs:
            p.kill()
            p.wait()


results = [round_with(1), round_with(2)]
print(json.dumps(results, indent=1))
one, two = results
print(f"\nanalyses per minute: 1 worker {one['per_minute']}, 2 workers {two['per_minute']} (x{two['per_minute'] / one['per_minute']:.2f})")
for r in results:
    i, b = r["hook_idle"], r["hook_during_backfill"]
    if "p99_ms" in i and "p99_ms" in b:
        print(f"{r['workers']} worker(s): cached hook p99 idle {i['p99_ms']} ms ({i['rps']} req/s), during back-fill {b['p99_ms']} ms ({b['rps']} req/s, {b['non_2xx']} non-2xx)")
