"""Drives phivault with the SMART on FHIR Python client (`fhirclient` from PyPI) as an
off-the-shelf client would: a bearer token and nothing else (no `X-Purpose-Of-Use` header).

usage: fhirclient_calls.py BASE_URL CA_FILE TOKEN_FILE MRN [PATIENT_ID]

Creates a Patient with identifier MRN, reads PATIENT_ID (or the one it created) and searches
Patient by that identifier. Prints one JSON object: for each call its HTTP status and, when it
succeeded, the id created or read and the number of search matches. Never prints a resource.
"""
import json
import sys

import requests
from fhirclient import server as fhirserver
from fhirclient.models.patient import Patient

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5"


def status_of(e):
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None) or repr(type(e).__name__)


def attempt(fn):
    try:
        return fn()
    except (fhirserver.FHIRPermissionDeniedException,
            fhirserver.FHIRUnauthorizedException,
            fhirserver.FHIRNotFoundException,
            requests.HTTPError) as e:
        return {"status": status_of(e)}
    except Exception as e:  # a client-side failure: named, never printed with data
        return {"status": "error: " + type(e).__name__}


def main():
    base, ca, token_file, mrn = sys.argv[1:5]
    patient_id = sys.argv[5] if len(sys.argv) > 5 else None
    with open(token_file, encoding="utf-8") as f:
        token = f.read().strip()
    srv = fhirserver.FHIRServer(None, base_uri=base)
    # Only the server's own CA: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the
    # environment override a session's `verify`, so the environment is not consulted.
    srv.session.trust_env = False
    srv.session.verify = ca
    srv.session.headers["Authorization"] = "Bearer " + token

    def create():
        p = Patient({
            "resourceType": "Patient",
            "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
            "name": [{"family": "Fhirclient", "given": ["Offshelf"]}],
            "gender": "unknown",
        })
        made = p.create(srv) or {}
        return {"status": 201, "id": made.get("id")}

    out = {"create": attempt(create)}
    read_id = patient_id or out["create"].get("id")

    def read():
        p = Patient.read(read_id, srv)
        return {"status": 200, "id": p.id}

    def search():
        found = Patient.where({"identifier": MRN_SYSTEM + "|" + mrn}).perform_resources(srv)
        return {"status": 200, "matches": len(found)}

    out["read"] = attempt(read)
    out["search"] = attempt(search)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
