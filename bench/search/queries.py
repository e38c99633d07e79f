#!/usr/bin/env python3
"""The search benchmark's requests (issue 22), the same values for every server.

    queries.py DATADIR IDS OUTDIR [COUNT]

DATADIR holds gen.py's patients.ndjson; IDS maps the generator's patient i to the server's
ids (line i: '<patient id>\\t<one of its Observation ids>'; for a server that kept the
generator's ids, the word 'generator'). Writes OUTDIR/<kind>.tsv for mixed.lua: the three
searches (name, family, obs), reads by id and creates. The search values (search_params) are
drawn deterministically, so the SQLite baseline runs exactly the same ones.
BENCH_OBS_PARAM=subject writes the Observation search as subject=Patient/<id> (the same
search; Medplum's MemoryRepository evaluates `patient` far more slowly than `subject`).
"""
import json
import os
import random
import sys
import unicodedata
from urllib.parse import quote

KINDS = ("name", "family", "obs")


def norm(s):
    """The contract's string normalization: NFKD, drop combining marks, lowercase, trim."""
    nfkd = unicodedata.normalize("NFKD", s)
    return "".join(c for c in nfkd if unicodedata.category(c) != "Mn").lower().strip()


def read_patients(datadir):
    with open(f"{datadir}/patients.ndjson") as f:
        return [json.loads(line) for line in f]


def search_params(patients, count):
    """count value sets per search, as dicts in the generator's ids."""
    rng = random.Random(2222)
    out = {k: [] for k in KINDS}
    for _ in range(count):
        p = rng.choice(patients)
        name = p["name"][0]
        word = name["family"] if rng.random() < 0.7 else rng.choice(name["given"])
        prefix = word[:rng.randint(3, 5)]
        out["name"].append({"name": prefix})
        p = rng.choice(patients)
        year = int(p["birthDate"][:4])
        out["family"].append({"family": p["name"][0]["family"],
                              "birthdate_ge": f"{year - 2}-01-01",
                              "birthdate_lt": f"{year + 3}-01-01"})
        i = rng.randrange(len(patients))
        start = rng.randint(2014, 2023)
        out["obs"].append({"patient": i, "category": rng.choice(["vital-signs", "laboratory"]),
                           "date_ge": f"{start}-01-01", "date_lt": f"{start + 3}-01-01"})
    return out


def search_path(kind, v, pid, obs_param="patient"):
    if kind == "name":
        return f"/fhir/Patient?name={quote(v['name'])}"
    if kind == "family":
        return (f"/fhir/Patient?family={quote(v['family'])}"
                f"&birthdate=ge{v['birthdate_ge']}&birthdate=lt{v['birthdate_lt']}")
    who = pid(v["patient"]) if obs_param == "patient" else f"Patient/{pid(v['patient'])}"
    return (f"/fhir/Observation?{obs_param}={who}&category={v['category']}"
            f"&date=ge{v['date_ge']}&date=lt{v['date_lt']}")


def read_ids(path, n):
    if path == "generator":
        return [(f"p{i}", f"o{i}-0") for i in range(n)]
    with open(path) as f:
        return [tuple(line.rstrip("\n").split("\t")) for line in f]


def create_bodies(patients, ids, count):
    rng = random.Random(3333)
    pats, obs = [], []
    for k in range(count):
        p = dict(rng.choice(patients))
        del p["id"]
        p["identifier"] = [{"system": "urn:bench:mrn", "value": f"NEW-{k:06d}"}]
        pats.append(json.dumps(p, separators=(",", ":")))
        pid = ids[rng.randrange(len(ids))][0]
        obs.append(json.dumps({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2026-{1 + k % 12:02d}-{1 + k % 28:02d}T10:00:00Z",
            "valueQuantity": {"value": 60 + k % 40, "unit": "/min",
                              "system": "http://unitsofmeasure.org", "code": "/min"}},
            separators=(",", ":")))
    return pats, obs


def write(outdir, kind, lines):
    with open(f"{outdir}/{kind}.tsv", "w") as f:
        f.writelines(line + "\n" for line in lines)


def main():
    datadir, ids_path, outdir = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    obs_param = os.environ.get("BENCH_OBS_PARAM", "patient")
    patients = read_patients(datadir)
    ids = read_ids(ids_path, len(patients))
    if len(ids) < len(patients):
        sys.exit(f"{ids_path}: {len(ids)} ids for {len(patients)} patients")
    params = search_params(patients, count)
    for kind in KINDS:
        write(outdir, kind, [search_path(kind, v, lambda i: ids[i][0], obs_param)
                             for v in params[kind]])
    rng = random.Random(4444)
    picks = [ids[rng.randrange(len(ids))] for _ in range(count)]
    write(outdir, "read-patient", [f"/fhir/Patient/{p}" for p, _ in picks])
    write(outdir, "read-obs", [f"/fhir/Observation/{o}" for _, o in picks])
    pats, obs = create_bodies(patients, ids, count)
    write(outdir, "create-patient", [f"/fhir/Patient\t{b}" for b in pats])
    write(outdir, "create-obs", [f"/fhir/Observation\t{b}" for b in obs])


if __name__ == "__main__":
    main()
