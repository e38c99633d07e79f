#!/usr/bin/env python3
"""Writes testdata/fhir/06-search-patients.json: synthetic patients and clinical records for
the search suite (tests/search.rs, issue 22). Deterministic: the same file on every run.

usage: search_gen.py OUT_FILE

Every value is made up. The patients exercise what the search contract matches on: accented
and case-variant names, names sharing prefixes, birth dates on year/month/day boundaries and
partial dates, postal codes, cities, phones in several punctuations, emails, genders, general
practitioners and organizations; the clinical records (Observation, Condition, Encounter,
DiagnosticReport, Immunization, MedicationRequest, AllergyIntolerance, Procedure,
DocumentReference) carry categories, codes, statuses and dates with time zones and Periods.
"""
import json
import sys
import unicodedata
import uuid

NS = uuid.UUID("6f1c2b9e-22aa-4c1e-9d5e-5ea4c8000022")
MRN = "urn:phivault:test:search-mrn"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def uid(kind, i):
    return str(uuid.uuid5(NS, f"{kind}-{i}"))


# (family, given, extra name fields) — accents, case variants, shared prefixes, a ligature
# and full-width letters (NFKD folds them), names without a family.
NAMES = [
    ("Muñoz", ["José"], {}), ("Munoz", ["Jose"], {}), ("MUÑOZ", ["María", "José"], {}),
    ("muñoz-Ibáñez", ["Zoë"], {}), ("Ibáñez", ["Zoe"], {"prefix": ["Dr."]}),
    ("Þórsdóttir", ["Ægir"], {}), ("Aegirson", ["Bjørn"], {}),
    ("Hollander", ["Wilhelmina"], {}), ("Holloway", ["Quentin"], {"suffix": ["Jr."]}),
    ("Hollis", ["Quenby"], {}), ("Holmberg", ["Ingrid"], {}), ("HOLLANDER", ["Walt"], {}),
    ("Hølland", ["Sigrún"], {}), ("Okafor", ["Chidinma"], {}), ("Okafor-Reyes", ["Chidi"], {}),
    ("Reyes", ["Ximena"], {}), ("Reyesford", ["Xavier"], {}), ("Çelik", ["Ümit"], {}),
    ("Celik", ["Umit"], {}), ("Dvořák", ["Antonín"], {}), ("Dvorak", ["Tonik"], {}),
    ("ﬁnley", ["Ffion"], {}), ("Ｋａｔｏ", ["Ｈａｒｕ"], {}), ("Kato", ["Haruki"], {}),
    ("Nguyễn", ["Thị", "Minh"], {}), ("Nguyen", ["Minh"], {}), ("Smythe", ["Rob"], {}),
    ("Smith", ["Robert"], {"text": "Robert Smith"}), ("Schmidt", ["Roberta"], {}),
    ("Lefèvre", ["Éloïse"], {}), ("Lefevre", ["Eloise"], {}), ("Wąsowska", ["Łucja"], {}),
    ("Quirke", ["Aoife"], {}), ("Quirkenwald", ["Oisín"], {}), ("Zebrowski", ["Zoë"], {}),
]

# Birth dates on year, month and day boundaries; two partial dates; one patient without.
BIRTHS = [
    "1979-12-31", "1980-01-01", "1980-01-31", "1980-02-01", "1980-02-29", "1980-03-01",
    "1999-12-31", "2000-01-01", "1975", "1982-07", "1961-03-14", "1961-03-15", "1990-06-15",
    "1990-06-16", "2004-11-30", "2004-12-01", "1955-05-05", "1969-07-20", "2012-02-29",
    "1980-12-31", "1981-01-01", "1946-08-19", "1933-01-09", "1999-01-01", "2001-09-09",
    "1988-10-10", "1980-06-30", None, "1979-01-01", "1992-04-04", "1993-03-03", "1994-02-02",
    "1966-06-06", "1977-07-07", "2008-08-08",
]
CITIES = ["Springfield", "Springdale", "SPRINGFIELD", "São Paulo", "Sao Paulo", "Zürich",
          "Zurich", "Montréal", "Springfield", "Springvale", "Springfield"]
POSTAL = ["01852", "01853", "02139", "02139-4307", "90210", "01852", "H2X 1Y4", "8001",
          "01420", "02138"]
# Phones of one number in several punctuations, others of 7 and 11 digits.
PHONES = ["555-010-2233", "(555) 010-2233", "+1 555 010 2233", "555.010.2233", "5550102233",
          "010-2233", "+44 20 7946 0958", "020 7946 0958", "555-010-9911", "1-555-010-9911"]
GENDERS = ["male", "female", "other", "unknown", "female", "male", "female"]


def patient(i, practitioners, orgs):
    family, given, extra = NAMES[i]
    name = {"use": "official", "given": given, **extra}
    if family:
        name["family"] = family
    p = {"resourceType": "Patient", "id": uid("patient", i),
         "identifier": [{"system": MRN, "value": f"SP-{1000 + i}"}],
         "active": i % 5 != 4, "name": [name], "gender": GENDERS[i % len(GENDERS)]}
    if i % 6 == 1:
        p["name"].append({"use": "nickname", "given": [f"Nick{chr(65 + i)}ley"]})
    if BIRTHS[i]:
        p["birthDate"] = BIRTHS[i]
    telecom = [{"system": "phone", "value": PHONES[i % len(PHONES)], "use": "home"}]
    if i % 3 == 0:
        local = "".join(c for c in unicodedata.normalize("NFKD", given[0])
                        if c.isascii() and c.isalpha()).lower()
        telecom.append({"system": "email", "value": f"{local}.{i}@Example.ORG"})
    if i % 4 == 2:
        telecom.append({"system": "sms", "value": PHONES[(i + 3) % len(PHONES)]})
    p["telecom"] = telecom
    p["address"] = [{"line": [f"{10 + i} Larkspur Row"], "city": CITIES[i % len(CITIES)],
                     "postalCode": POSTAL[i % len(POSTAL)], "country": "US"}]
    if i % 2 == 0:
        p["generalPractitioner"] = [{"reference": f"Practitioner/{practitioners[i % 3]}"}]
    if i % 7 == 3:
        p.setdefault("generalPractitioner", []).append(
            {"reference": f"Organization/{orgs[0]}"})
    if i % 3 != 2:
        p["managingOrganization"] = {"reference": f"Organization/{orgs[i % 2]}"}
    return p


def coding(system, code, display=None):
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c]}


# Observation dates: time zones, a Period (open and closed), an instant, partial dates.
OBS = [
    ("vital-signs", "8867-4", "final", {"effectiveDateTime": "2021-03-04T23:30:00-05:00"}),
    ("vital-signs", "8480-6", "final", {"effectiveDateTime": "2021-03-05T01:00:00+02:00"}),
    ("laboratory", "2345-7", "amended", {"effectiveDateTime": "2021-03"}),
    ("laboratory", "4548-4", "final", {"effectivePeriod": {
        "start": "2020-12-30T08:00:00Z", "end": "2021-01-02T08:00:00Z"}}),
    ("vital-signs", "8867-4", "preliminary", {"effectiveInstant": "2022-01-01T00:00:00.000Z"}),
    ("social-history", "72166-2", "final", {"effectivePeriod": {"start": "2019-06-01"}}),
    ("laboratory", "2345-7", "final", {"effectiveDateTime": "2020"}),
    ("vital-signs", "29463-7", "cancelled", {"effectiveDateTime": "2020-02-29T12:00:00Z"}),
    ("laboratory", "718-7", "final", {"effectiveDateTime": "2021-12-31T23:59:59+00:00"}),
    ("vital-signs", "8302-2", "final", {"effectiveDateTime": "2021-03-04"}),
]


def observation(n, pid, cat, code, status, when):
    o = {"resourceType": "Observation", "id": uid("obs", n), "status": status,
         "category": [coding(OBS_CAT, cat)], "code": coding(LOINC, code),
         "subject": {"reference": f"Patient/{pid}"}, **when,
         "valueQuantity": {"value": round(61.37 + n * 7.91, 2), "unit": "1"}}
    if n % 4 == 3:
        o["code"]["coding"].append({"code": f"LOCAL-{code}"})
    return o


def clinical(pid, k):
    """One record of each other clinical type for patient `pid` (variant k)."""
    p = {"reference": f"Patient/{pid}"}
    day = ["2018-04-01T10:00:00+02:00", "2021-03-04", "2022-11"][k % 3]
    status = ["active", "resolved", "inactive"][k % 3]
    yield {"resourceType": "Condition", "id": uid("cond", f"{pid}-{k}"), "subject": p,
           "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                    status),
           "category": [coding("http://terminology.hl7.org/CodeSystem/condition-category",
                               ["problem-list-item", "encounter-diagnosis"][k % 2])],
           "code": coding(SCT, ["44054006", "38341003", "195662009"][k % 3]),
           **({"onsetDateTime": day} if k % 2 == 0 else
              {"onsetPeriod": {"start": "2015-01-01", "end": "2016-06"}})}
    yield {"resourceType": "Encounter", "id": uid("enc", f"{pid}-{k}"), "subject": p,
           "identifier": [{"system": "urn:phivault:test:visit", "value": f"V-{pid[:4]}-{k}"}],
           "status": ["finished", "in-progress", "planned"][k % 3],
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                     "code": ["AMB", "IMP", "EMER"][k % 3]},
           "type": [coding(SCT, ["185349003", "270427003"][k % 2])],
           "period": [{"start": "2021-03-04T09:00:00-04:00", "end": "2021-03-04T10:00:00-04:00"},
                      {"start": "2021-12-31T22:00:00Z"},
                      {"start": "2019-02-27", "end": "2019-03-02"}][k % 3]}
    yield {"resourceType": "DiagnosticReport", "id": uid("dr", f"{pid}-{k}"), "subject": p,
           "status": ["final", "preliminary"][k % 2],
           "category": [coding("http://terminology.hl7.org/CodeSystem/v2-0074",
                               ["LAB", "RAD"][k % 2])],
           "code": coding(LOINC, ["58410-2", "24323-8", "57021-8"][k % 3]),
           "effectiveDateTime": ["2021-03-04T08:00:00Z", "2020-01-01", "2022-06-30T12:00:00-07:00"][k % 3]}
    yield {"resourceType": "Immunization", "id": uid("imm", f"{pid}-{k}"), "patient": p,
           "status": ["completed", "not-done"][k % 2],
           "vaccineCode": coding("http://hl7.org/fhir/sid/cvx", ["140", "208", "03"][k % 3]),
           "occurrenceDateTime": ["2020-10-01T09:00:00-04:00", "2021-04", "2021-12-31"][k % 3]}
    med = {"resourceType": "MedicationRequest", "id": uid("mr", f"{pid}-{k}"), "subject": p,
           "status": ["active", "stopped", "completed"][k % 3],
           "intent": ["order", "plan"][k % 2],
           "authoredOn": ["2021-03-04T10:00:00+01:00", "2019", "2022-02-28"][k % 3]}
    if k % 2 == 0:
        med["medicationReference"] = {"reference": f"Medication/{uid('med', k % 4)}"}
    else:
        med["medicationCodeableConcept"] = coding(
            "http://www.nlm.nih.gov/research/umls/rxnorm", ["860975", "197361"][k % 2])
    yield med
    yield {"resourceType": "AllergyIntolerance", "id": uid("ai", f"{pid}-{k}"), "patient": p,
           "clinicalStatus": coding(
               "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
               ["active", "resolved"][k % 2]),
           "code": coding(SCT, ["91935009", "300916003"][k % 2])}
    yield {"resourceType": "Procedure", "id": uid("proc", f"{pid}-{k}"), "subject": p,
           "status": ["completed", "in-progress"][k % 2],
           "code": coding(SCT, ["80146002", "73761001"][k % 2]),
           **({"performedDateTime": "2021-03-03T23:00:00-03:00"} if k % 2 == 0 else
              {"performedPeriod": {"start": "2020-05-01", "end": "2020-05-03"}})}
    yield {"resourceType": "DocumentReference", "id": uid("doc", f"{pid}-{k}"), "subject": p,
           "status": ["current", "superseded"][k % 2],
           "type": coding(LOINC, ["34117-2", "11488-4"][k % 2]),
           "category": [coding("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                               "clinical-note")],
           "date": ["2021-03-04T12:00:00.000+00:00", "2020-07-15T08:30:00.000-05:00"][k % 2],
           "content": [{"attachment": {"contentType": "text/plain", "data": "bm90ZQ=="}}]}


def resources():
    practitioners = [uid("pract", i) for i in range(3)]
    orgs = [uid("org", i) for i in range(2)]
    out = [{"resourceType": "Organization", "id": orgs[i], "active": True,
            "name": f"Search Test Clinic {i}"} for i in range(2)]
    out += [{"resourceType": "Practitioner", "id": practitioners[i], "active": True,
             "name": [{"family": f"Searchdoc{i}", "given": ["Test"]}]} for i in range(3)]
    out += [{"resourceType": "Medication", "id": uid("med", i),
             "code": coding("http://www.nlm.nih.gov/research/umls/rxnorm", ["314076", "617314"][i % 2])}
            for i in range(4)]
    patients = [patient(i, practitioners, orgs) for i in range(len(NAMES))]
    out += patients
    n = 0
    # Patient 0 has every observation (pages of 3), patients 1 to 4 a few each.
    for pi, count in [(0, len(OBS)), (1, 4), (2, 3), (3, 2), (4, 1)]:
        for j in range(count):
            cat, code, status, when = OBS[(j + pi) % len(OBS)]
            out.append(observation(n, patients[pi]["id"], cat, code, status, when))
            n += 1
    for pi, variants in [(0, 3), (1, 2), (2, 1), (7, 1)]:
        for k in range(variants):
            out.extend(clinical(patients[pi]["id"], k))
    return out


def main(path):
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
               for r in resources()]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(bundle, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
