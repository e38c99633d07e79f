"""Searches phivault with the SMART on FHIR Python client (`fhirclient`) as an off-the-shelf
client would: a bearer token and nothing else (no `X-Purpose-Of-Use` header), a name prefix and
`birthdate=ge…`, pages of 2 followed with fhirclient's own paging (Bundle next links).

usage: fhirclient_search.py BASE_URL CA_FILE TOKEN_FILE NAME BIRTHDATE

Prints one JSON object: the status ("ok", an HTTP status, or the client-side error's type),
the number of pages and the ids found (ids only, never a resource).
"""
import json
import sys

import requests
from fhirclient import server as fhirserver
from fhirclient.models.patient import Patient


def main():
    base, ca, token_file, name, birthdate = sys.argv[1:6]
    with open(token_file, encoding="utf-8") as f:
        token = f.read().strip()
    srv = fhirserver.FHIRServer(None, base_uri=base)
    srv.session.trust_env = False
    srv.session.verify = ca
    srv.session.headers["Authorization"] = "Bearer " + token
    search = Patient.where({"name": name, "birthdate": "ge" + birthdate, "_count": "2"})
    out = {"status": "ok", "pages": 0, "ids": []}
    try:
        for bundle in search.perform_iter(srv):
            out["pages"] += 1
            out["ids"] += [e.resource.id for e in bundle.entry or []]
    except requests.HTTPError as e:
        out["status"] = getattr(e.response, "status_code", "http")
    except Exception as e:  # a client-side failure: named, never printed with data
        out["status"] = "error: " + type(e).__name__ + ": " + str(e)[:120]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
