"""Schemathesis hooks for tests/api/openapi.rs: every generated request carries the token a real
caller would send, so the API is explored past its front door.

- CDS Hooks operations (tag "CDS Hooks") get a fresh EHR JWT per request: ES384 with the test
  EHR's key, `aud` the URL invoked, a new `jti` (the service refuses a replayed one).
- Compliance operations get the staff token the test passes in NEUROCDS_STAFF_TOKEN.
- Operations endpoints need none.

Environment: NEUROCDS_BASE_URL, NEUROCDS_EHR_ISS, NEUROCDS_EHR_KEY (a PEM path),
NEUROCDS_EHR_KID, NEUROCDS_STAFF_TOKEN.
"""

import os
import time
import uuid

import jwt
import schemathesis

BASE = os.environ["NEUROCDS_BASE_URL"].rstrip("/")
ISS = os.environ["NEUROCDS_EHR_ISS"]
KID = os.environ.get("NEUROCDS_EHR_KID", "ehr-1")
with open(os.environ["NEUROCDS_EHR_KEY"], "rb") as f:
    EHR_KEY = f.read()
STAFF_TOKEN = os.environ["NEUROCDS_STAFF_TOKEN"]


def ehr_token(aud: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, EHR_KEY, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


@schemathesis.auth(refresh_interval=None)
class Callers:
    """The EHR's or the staff's bearer token, by the operation's tag."""

    def get(self, case, ctx):
        tags = case.operation.tags or []
        if "CDS Hooks" in tags:
            return ehr_token(BASE + case.formatted_path)
        if "Compliance" in tags:
            return STAFF_TOKEN
        return None

    def set(self, case, data, ctx):
        if data is not None:
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"
