#!/usr/bin/env python3
"""Validates every resource of a FHIR Bundle (JSON file) as FHIR R4 with the independent
`fhir.resources` package (its R4B models: R4B changed none of the resources phivault emits
here). Prints one line per invalid resource and exits 1 if any; prints the count and exits 0.
"""
import json
import sys

from fhir.resources.R4B import get_fhir_model_class


def main(path):
    with open(path) as f:
        bundle = json.load(f)
    get_fhir_model_class("Bundle").model_validate(bundle)
    bad = 0
    n = 0
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        n += 1
        try:
            get_fhir_model_class(res["resourceType"]).model_validate(res)
        except Exception as e:  # noqa: BLE001 - report every failure
            bad += 1
            print(f"invalid {res.get('resourceType')}/{res.get('id')}: {e}".replace("\n", " "))
    print(f"validated {n} resources, {bad} invalid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
