#!/usr/bin/env python3
"""Writes the retention fixtures (run from this folder). All people are invented.

Three collection Bundles, each received (imported) at its Bundle.timestamp: the tests set
their fake clock to it before importing, so every record's last update is known.
"""
import json

PATIENTS = {
    "p-alder": ("Alderwood", "Agatha", "1950-02-11", "MRN-RT-1001", "555-301-1001"),
    "p-birch": ("Birchfield", "Bertram", "1962-07-30", "MRN-RT-1002", "555-301-1002"),
    "p-cedar": ("Cedarholm", "Cecilia", "1971-11-05", "MRN-RT-1003", "555-301-1003"),
    "p-dogwood": ("Dogwoodson", "Dorian", "1948-04-22", "MRN-RT-1004", "555-301-1004"),
    "p-elm": ("Elmsworth", "Eleanor", "1985-09-14", "MRN-RT-1005", "555-301-1005"),
}


def patient(pid):
    family, given, birth, mrn, phone = PATIENTS[pid]
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "http://hospital.example.org/mrn", "value": mrn}],
        "name": [{"family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": phone}],
        "birthDate": birth,
    }


def encounter(eid, pid, start=None, end=None):
    period = {}
    if start:
        period["start"] = start
    if end:
        period["end"] = end
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished" if end else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": period,
    }


def observation(oid, pid, value):
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def condition(cid, pid):
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


def bundle(name, timestamp, resources):
    doc = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timestamp,
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources
        ],
    }
    with open(name, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


bundle("01-received-2015.json", "2015-03-01T09:00:00Z", [
    patient("p-alder"), patient("p-birch"), patient("p-cedar"), patient("p-dogwood"),
    patient("p-elm"),
    encounter("enc-alder-1", "p-alder", "2004-06-29T08:00:00Z", "2004-06-30T17:00:00Z"),
    encounter("enc-alder-2", "p-alder", "2009-02-10T08:00:00Z", "2009-02-11T12:00:00Z"),
    encounter("enc-birch-1", "p-birch", "2012-01-05T09:00:00Z", "2012-01-05T10:00:00Z"),
    encounter("enc-birch-2", "p-birch", start="2021-08-30T07:30:00Z"),
    encounter("enc-elm-1", "p-elm", "2020", "2020"),
    observation("obs-alder-1", "p-alder", 72),
    observation("obs-birch-1", "p-birch", 80),
    observation("obs-birch-2", "p-birch", 82),
    observation("obs-cedar-1", "p-cedar", 64),
    observation("obs-dogwood-1", "p-dogwood", 90),
    observation("obs-elm-1", "p-elm", 70),
    condition("cond-birch-1", "p-birch"),
    condition("cond-cedar-1", "p-cedar"),
])

bundle("02-received-2022.json", "2022-09-15T14:00:00Z", [
    observation("obs-birch-3", "p-birch", 78),
    observation("obs-alder-2", "p-alder", 75),
])

bundle("03-received-2026.json", "2026-01-10T11:00:00Z", [
    observation("obs-birch-4", "p-birch", 76),
    # An update of a 2015 Observation: its last update is now 2026.
    observation("obs-birch-2", "p-birch", 84),
    observation("obs-cedar-2", "p-cedar", 66),
])
