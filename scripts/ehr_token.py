#!/usr/bin/env python3
"""Plays the EHR's side of CDS Hooks trust: makes signing keys, publishes a JWKS, signs JWTs.

The CDS Hooks 2.0 "Trusting CDS Clients" section asks the EHR (the CDS client) to send
`Authorization: Bearer <JWT>` on every call, signed with its private key (ES384 or RS384
recommended), with `iss`, `aud`, `exp`, `iat`, `jti` in the payload and `alg`, `kid`, `typ`
(and optionally `jku`) in the header. This script produces exactly such tokens for the tests
(`tests/cds_trust.rs`) and the demo, and - on request - the forged ones a service must refuse.

Run it with the tools venv: ~/.cache/neurocds/tools-venv/bin/python scripts/ehr_token.py ...

  keygen --dir D [--alg ES384|RS384|ES256|RS256] [--kid K] [--unpublished]
      Writes D/keys/<kid>.pem (private, PKCS#8) and D/keys/<kid>.jwk.json (public JWK) and,
      unless --unpublished, adds the public JWK to D/jwks.json. Prints the kid.
  jwks --dir D --out F [--kid K ...]
      Writes a JWKS with the named keys (all keys in D/keys when none is named).
  sign --dir D --aud URL [--aud URL ...] [--kid K | --alg A] [--iss I] [--sub S]
       [--exp-in 300] [--iat-offset 0] [--nbf-offset N] [--jti J | --no-jti] [--no-exp]
       [--no-iat] [--jku URL] [--tenant T] [--header k=v ...] [--tamper k=v ...]
       [--forge none|hs256-with-public-key]
      Prints a compact JWT. Several --aud give an array. --tamper changes a payload claim after
      signing (the signature no longer matches). --forge makes the classic attack tokens:
      `none` is an unsigned token with alg "none"; `hs256-with-public-key` is HS256 with the
      signing key's public PEM as HMAC secret (the algorithm-confusion attack).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: dict) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def keys_dir(root: Path) -> Path:
    return root / "keys"


def public_jwk(private_key, alg: str, kid: str) -> dict:
    public = private_key.public_key()
    if alg.startswith("ES"):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def cmd_keygen(args: argparse.Namespace) -> None:
    root = Path(args.dir)
    keys_dir(root).mkdir(parents=True, exist_ok=True)
    kid = args.kid or f"{args.alg.lower()}-{uuid.uuid4().hex[:8]}"
    if args.alg == "ES384":
        private_key = ec.generate_private_key(ec.SECP384R1())
    elif args.alg == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (keys_dir(root) / f"{kid}.pem").write_bytes(pem)
    jwk = public_jwk(private_key, args.alg, kid)
    (keys_dir(root) / f"{kid}.jwk.json").write_text(json.dumps(jwk, indent=2))
    if not args.unpublished:
        jwks_path = root / "jwks.json"
        jwks = json.loads(jwks_path.read_text()) if jwks_path.exists() else {"keys": []}
        jwks["keys"] = [k for k in jwks["keys"] if k.get("kid") != kid] + [jwk]
        jwks_path.write_text(json.dumps(jwks, indent=2))
    print(kid)


def cmd_jwks(args: argparse.Namespace) -> None:
    root = Path(args.dir)
    if args.kid:
        paths = [keys_dir(root) / f"{kid}.jwk.json" for kid in args.kid]
    else:
        paths = sorted(keys_dir(root).glob("*.jwk.json"))
    jwks = {"keys": [json.loads(p.read_text()) for p in paths]}
    Path(args.out).write_text(json.dumps(jwks, indent=2))


def pick_kid(root: Path, kid: str | None, alg: str | None) -> str:
    if kid:
        return kid
    for path in sorted(keys_dir(root).glob("*.jwk.json")):
        jwk = json.loads(path.read_text())
        if alg is None or jwk.get("alg") == alg:
            return jwk["kid"]
    sys.exit(f"no key{' for ' + alg if alg else ''} in {keys_dir(root)}: run keygen first")


def parse_pairs(pairs: list[str]) -> dict:
    """k=v pairs; v is read as JSON when it parses (numbers, null, arrays), else as a string."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_sign(args: argparse.Namespace) -> None:
    root = Path(args.dir)
    kid = pick_kid(root, args.kid, args.alg)
    jwk = json.loads((keys_dir(root) / f"{kid}.jwk.json").read_text())
    alg = jwk["alg"]
    private_pem = (keys_dir(root) / f"{kid}.pem").read_bytes()

    now = int(time.time())
    iat = now + args.iat_offset
    claims: dict = {"iss": args.iss, "aud": args.aud[0] if len(args.aud) == 1 else args.aud}
    if not args.no_iat:
        claims["iat"] = iat
    if not args.no_exp:
        claims["exp"] = iat + args.exp_in
    if args.nbf_offset is not None:
        claims["nbf"] = now + args.nbf_offset
    if not args.no_jti:
        claims["jti"] = args.jti or str(uuid.uuid4())
    if args.sub:
        claims["sub"] = args.sub
    if args.tenant:
        claims["tenant"] = args.tenant

    headers: dict = {"kid": kid, "typ": "JWT"}
    if args.jku:
        headers["jku"] = args.jku
    headers.update(parse_pairs(args.header))

    if args.forge == "none":
        token = f"{b64url_json({**headers, 'alg': 'none'})}.{b64url_json(claims)}."
    elif args.forge == "hs256-with-public-key":
        # PyJWT refuses a PEM as HMAC secret (precisely to stop this attack), so sign by hand.
        private_key = serialization.load_pem_private_key(private_pem, password=None)
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signing_input = f"{b64url_json({**headers, 'alg': 'HS256'})}.{b64url_json(claims)}"
        mac = hmac.new(public_pem, signing_input.encode("ascii"), hashlib.sha256).digest()
        token = f"{signing_input}.{b64url(mac)}"
    else:
        token = jwt.encode(claims, private_pem, algorithm=alg, headers=headers)

    if args.tamper:
        header_part, payload_part, signature_part = token.split(".")
        payload = json.loads(b64url_decode(payload_part))
        payload.update(parse_pairs(args.tamper))
        token = f"{header_part}.{b64url_json(payload)}.{signature_part}"
    print(token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="make a signing key pair")
    keygen.add_argument("--dir", required=True)
    keygen.add_argument("--alg", choices=ALGORITHMS, default="ES384")
    keygen.add_argument("--kid")
    keygen.add_argument("--unpublished", action="store_true", help="do not add it to D/jwks.json")
    keygen.set_defaults(func=cmd_keygen)

    jwks = sub.add_parser("jwks", help="write a JWKS with chosen keys")
    jwks.add_argument("--dir", required=True)
    jwks.add_argument("--out", required=True)
    jwks.add_argument("--kid", action="append", default=[])
    jwks.set_defaults(func=cmd_jwks)

    sign = sub.add_parser("sign", help="print a signed JWT")
    sign.add_argument("--dir", required=True)
    sign.add_argument("--aud", action="append", required=True)
    sign.add_argument("--kid")
    sign.add_argument("--alg", choices=ALGORITHMS, help="pick the first key of this algorithm")
    sign.add_argument("--iss", default="https://ehr.example.org")
    sign.add_argument("--sub")
    sign.add_argument("--tenant")
    sign.add_argument("--exp-in", type=int, default=300, help="exp = iat + this (seconds)")
    sign.add_argument("--iat-offset", type=int, default=0, help="iat = now + this (seconds)")
    sign.add_argument("--nbf-offset", type=int, help="nbf = now + this (seconds)")
    sign.add_argument("--jti")
    sign.add_argument("--no-jti", action="store_true")
    sign.add_argument("--no-exp", action="store_true")
    sign.add_argument("--no-iat", action="store_true")
    sign.add_argument("--jku")
    sign.add_argument("--header", action="append", default=[], help="extra header field k=v")
    sign.add_argument("--tamper", action="append", default=[], help="change claim k=v after signing")
    sign.add_argument("--forge", choices=("none", "hs256-with-public-key"))
    sign.set_defaults(func=cmd_sign)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
