# bench/callgrind/run.sh: a fixed sequence of FHIR requests over HTTPS (one keep-alive connection): creates, reads,
# searches, history. Prints how many succeeded; exits 1 on any failure.
import http.client, json, ssl, sys, base64
port, ca, cred, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("localhost", port, context=ctx)
basic = base64.b64encode(cred.encode()).decode()
c.request("POST", "/oauth/token", "grant_type=client_credentials",
          {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); tok = json.loads(r.read())["access_token"]
H = {"Authorization": "Bearer " + tok, "X-Purpose-Of-Use": "TREAT", "Content-Type": "application/fhir+json"}
ok = 0
def call(m, p, body=None):
    global ok
    c.request(m, p, json.dumps(body) if body else None, H)
    r = c.getresponse(); b = r.read()
    if r.status >= 300:
        print("FAIL", m, p, r.status, b[:200]); sys.exit(1)
    ok += 1
    return json.loads(b) if b else None
ids = []
for i in range(n):
    p = call("POST", "/fhir/Patient", {"resourceType": "Patient", "identifier": [{"system": "urn:perf", "value": f"P{i}"}],
             "name": [{"family": f"Perf{i}", "given": ["Ann"]}], "birthDate": "1970-01-01", "gender": "female"})
    ids.append(p["id"])
for i in range(n):
    call("GET", f"/fhir/Patient/{ids[i]}")
for i in range(n):
    call("POST", "/fhir/Observation", {"resourceType": "Observation", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
         "subject": {"reference": f"Patient/{ids[i]}"}, "valueQuantity": {"value": i, "unit": "mg/dL"}})
for i in range(n):
    call("GET", f"/fhir/Patient?identifier=urn:perf|P{i}")
for i in range(n // 5):
    call("GET", f"/fhir/Patient/{ids[i]}/_history")
    call("GET", f"/fhir/Observation?patient={ids[i]}")
print("ok", ok)
