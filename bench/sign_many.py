"""Signs N EHR tokens (unique jti) for one audience, one per line: the load test's supply."""
import sys, time, uuid
from pathlib import Path

import jwt

keys, iss, aud, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
kid = sorted(p.stem for p in (keys / "keys").glob("*.pem"))[0]
pem = (keys / "keys" / f"{kid}.pem").read_bytes()
now = int(time.time())
for _ in range(n):
    print(jwt.encode({"iss": iss, "aud": aud, "iat": now, "exp": now + 280, "jti": str(uuid.uuid4())}, pem, algorithm="ES384", headers={"kid": kid, "typ": "JWT"}))
