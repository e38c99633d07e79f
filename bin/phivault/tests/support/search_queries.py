"""The queries of the search suite (tests/search.rs), drawn from the fixtures themselves: for
every parameter of the contract, prefixes, accents, case variants, :exact, comma OR, AND
combinations and every date prefix with partial dates. A query is a dict: `type`, `criteria`
([(param, modifier, value)]), `extra` (result parameters, as query pairs) and `may_refuse`
(the contract lets the server answer 400 too-costly).
"""
from search_oracle import PARAMS, PREFIXES, D, T, R, norm

DATE_VALUES = ["1980", "1980-02", "1980-02-29", "1980-01-01", "1979-12-31", "1975", "1975-06",
               "1982-07", "1982-07-15", "2000-01-01", "1999-12-31T23:00:00-05:00",
               "1961-03-14T12:00:00Z", "1990-06"]
CLINICAL_DATES = ["2021", "2021-03", "2021-03-04", "2021-03-05", "2021-01-01",
                  "2020-12-31T12:00:00Z", "2021-03-04T23:30:00-05:00", "2015-06"]


def q(rtype, *criteria, extra=(), may_refuse=False):
    crit = [(p.split(":")[0], p.split(":")[1] if ":" in p else None, v) for p, v in criteria]
    return {"type": rtype, "criteria": crit, "extra": list(extra), "may_refuse": may_refuse}


def generated(store, t):
    """Resources of type t from the generated file (phase 1), sorted by id."""
    return sorted((k for k in store.of_type(t) if store.phase[k] == 1))


def name_queries(store):
    out = []
    words = set()
    for k in generated(store, "Patient"):
        for n in store.res[k].get("name", []):
            words.update([n["family"]] if n.get("family") else [])
            words.update(n.get("given", []))
    for w in sorted(words):
        for v in {w[:3], w[:3].lower(), w[:4].upper(), norm(w)[:4]}:
            if len(v) >= 3:
                out.append(q("Patient", ("name", v)))
        out.append(q("Patient", ("name:exact", w)))
        out.append(q("Patient", ("name:exact", w.lower())))
    fixed = [("name", "hol"), ("name", "Hol"), ("name", "HOLLA"), ("name", "muñ"),
             ("name", "mun"), ("name", "MUÑOZ"), ("name", "zoe"), ("name", "Zoë"),
             ("name", "ægi"), ("name", "aeg"), ("name", "þór"), ("name", "fin"),
             ("name", "kato"), ("name", "ｋａｔｏ"), ("name", "nguy"), ("name", "łuc"),
             ("name", "luc"), ("name", "dr."), ("name", "jr"), ("name", "robert smith"),
             ("name", "nick"), ("name", "quin"), ("name", "  reyes  "), ("family", "okafor"),
             ("family", "reyes"), ("given", "zo"), ("given", "chid"), ("family", "ibá"),
             ("name", "muñ,hol"), ("family", "celik,dvo"), ("name:exact", "Muñoz"),
             ("name:exact", "MUÑOZ"), ("family:exact", "Munoz"), ("given:exact", "José"),
             ("given:exact", "Jose"), ("family:exact", "Ｋａｔｏ")]
    out += [q("Patient", c) for c in fixed]
    out += [q("Patient", ("name", "hol"), ("given", "quen")),
            q("Patient", ("name", "hol"), ("name", "holloway")),
            q("Patient", ("family", "muñ"), ("given", "jos")),
            q("Patient", ("name", "reyes"), ("gender", "male,other")),
            q("Patient", ("name", "o"), may_refuse=True),
            q("Patient", ("name", "ho"), may_refuse=True)]
    for v in ["Smith", "smyth", "Robert", "munos", "Holender", "Kwentin", "Aegir", "Nguyen"]:
        out.append(q("Patient", ("phonetic", v)))
    return out


def patient_field_queries(store):
    orgs = [k.split("/")[1] for k in generated(store, "Organization")]
    pracs = [k.split("/")[1] for k in generated(store, "Practitioner")]
    pats = [k.split("/")[1] for k in generated(store, "Patient")]
    managed = ("organization", ",".join(orgs))
    out = []
    for prefix in PREFIXES:
        for v in DATE_VALUES:
            out.append(q("Patient", ("birthdate", prefix + v), managed))
            out.append(q("Patient", ("birthdate", prefix + v),
                         may_refuse=prefix not in ("eq", "ap") or len(v) > 10))
    out += [q("Patient", ("birthdate", "ge1980"), ("birthdate", "lt1981"), managed),
            q("Patient", ("birthdate", "gt1979-12-31"), ("birthdate", "le1980-02"), managed),
            q("Patient", ("birthdate", "1980-01-01,1999-12-31,1975"))]
    # family + a birth-date range: the family-year index (a few years) or not (many)
    for fam in ["hol", "Holloway", "muñ", "MUNOZ", "ok", "celik,dvo", "reyes", "ｋａｔｏ"]:
        for lo, hi in [("1940", "1960"), ("1975-06-15", "1990"), ("1900", "2030")]:
            out.append(q("Patient", ("family", fam), ("birthdate", "ge" + lo),
                         ("birthdate", "lt" + hi), may_refuse=len(fam) < 3))
    out += [q("Patient", ("family:exact", "Muñoz"), ("birthdate", "ge1950"),
              ("birthdate", "le1995")),
            q("Patient", ("family", "hol"), ("birthdate", "gt1950"), ("birthdate", "1980,1990"))]
    for g in ["male", "female", "other", "unknown", "female,other",
              "|male", "http://hl7.org/fhir/administrative-gender|female"]:
        out.append(q("Patient", ("gender", g), ("address-city", "spring")))
    for v in ["0185", "01852", "02139", "02139-4307", "h2x", "H2X 1Y4", "8001", "9021",
              "0185,0214"]:
        out.append(q("Patient", ("address-postalcode", v)))
    out += [q("Patient", ("address-postalcode:exact", "02139")),
            q("Patient", ("address-postalcode:exact", "h2x 1y4"))]
    for v in ["spring", "Springfield", "SPRINGF", "sao", "São", "zür", "zur", "montreal",
              "Lowell", "fitch", "sao,zur"]:
        out.append(q("Patient", ("address-city", v)))
    out += [q("Patient", ("address-city:exact", "Springfield")),
            q("Patient", ("address-city:exact", "Sao Paulo")),
            q("Patient", ("address-city", "spring"), ("address-postalcode", "0185"))]
    for v in ["5550102233", "(555) 010-2233", "+1 (555) 010-2233", "555.010.2233",
              "010-2233", "0102233", "02079460958", "+44 20 7946 0958", "1-555-010-9911",
              "555-301-8842", "555-010-2233,555-010-9911"]:
        out.append(q("Patient", ("phone", v)))
    emails = [c["value"] for k in generated(store, "Patient")
              for c in store.res[k]["telecom"] if c["system"] == "email"]
    for e in emails[:4] + [emails[0].lower(), emails[1].upper(), "rosalind.qo@example.org"]:
        out.append(q("Patient", ("email", e)))
    for v in ["phone|555-010-2233", "sms|555-010-2233", "email|" + emails[2].upper(),
              "555-010-2233", emails[3], "phone|" + emails[3]]:
        out.append(q("Patient", ("telecom", v)))
    mrn = "urn:phivault:test:search-mrn"
    for v in [f"{mrn}|SP-1003", "SP-1004", "|SP-1004", f"{mrn}|SP-1005,{mrn}|SP-1006",
              "http://hospital.smarthealthit.org|MRN-8841906", "MRN-7730152", f"{mrn}|sp-1003"]:
        out.append(q("Patient", ("identifier", v)))
    out += [q("Patient", ("_id", pats[0])), q("Patient", ("_id", ",".join(pats[3:6]))),
            q("Patient", ("_id", pats[1]), ("name", "zzz"))]
    for v in [f"Practitioner/{pracs[0]}", pracs[1],
              f"https://fhir.example.org/r4/Practitioner/{pracs[2]}", f"Organization/{orgs[0]}",
              f"Practitioner/{pracs[0]},Practitioner/{pracs[1]}"]:
        out.append(q("Patient", ("general-practitioner", v)))
    for v in [f"Organization/{orgs[1]}", orgs[0], f"https://x.example/Organization/{orgs[0]}"]:
        out.append(q("Patient", ("organization", v)))
    return out


def last_updated_queries(store, split):
    named = ("name", "quin,hol,okon,muñ,rosa")
    out = []
    for prefix in ["gt", "ge", "lt", "le", "sa", "eb"]:
        out.append(q("Patient", ("_lastUpdated", prefix + split), named))
        for t in ["Observation", "Condition", "Encounter"]:
            for p in clinical_patients(store, t)[:2]:
                out.append(q(t, ("_lastUpdated", prefix + split), ("patient", p)))
    return out


def clinical_patients(store, t):
    """The patients (`Patient/id`) that have records of type t, those with most first."""
    counts = {}
    for k in store.of_type(t):
        for p in PARAMS[t]["patient"][1](store, store.res[k]):
            counts[p] = counts.get(p, 0) + 1
    return sorted(counts, key=lambda p: (-counts[p], p))


def values_of(store, t, param, keys):
    kind, read = PARAMS[t][param]
    seen = []
    for k in keys:
        for v in read(store, store.res[k]):
            if v not in seen:
                seen.append(v)
    return kind, seen


def token_forms(values):
    out = []
    for v in values:
        if len(v) == 3:
            out += [v[1], "|" + v[1]]
        else:
            out += [v[1], (v[0] or "") + "|" + v[1]]
            if v[0]:
                out.append("|" + v[1])
    if len(values) >= 2:
        out.append(values[0][1] + "," + values[-1][1])
    out.append("no-such-code")
    return out


def clinical_queries(store):
    out = []
    for t in PARAMS:
        if t == "Patient":
            continue
        patients = clinical_patients(store, t)
        for i, p in enumerate(patients):
            pid = p.split("/")[1]
            keys = [k for k in store.of_type(t) if p in PARAMS[t]["patient"][1](store, store.res[k])]
            forms = [p, pid] if i else [p, pid, "https://h.example/fhir/" + p]
            out += [q(t, ("patient", f)) for f in forms]
            if "subject" in PARAMS[t]:
                out += [q(t, ("subject", p)), q(t, ("subject", pid))]
            if i > 1:
                continue
            out += [q(t, ("patient", p), ("_id", keys[0].split("/")[1]))]
            for param, (kind, _) in PARAMS[t].items():
                if kind not in (T, D, R) or param in ("patient", "subject", "_id"):
                    continue
                _, values = values_of(store, t, param, keys)
                if kind == T:
                    out += [q(t, ("patient", p), (param, f)) for f in token_forms(values)]
                elif kind == R:
                    out += [q(t, ("patient", p), (param, v)) for v in values]
                else:
                    for prefix in (PREFIXES if i == 0 else ["eq", "ge", "lt"]):
                        for v in (CLINICAL_DATES if i == 0 else CLINICAL_DATES[:3]):
                            out.append(q(t, ("patient", p), (param, prefix + v)))
                    out.append(q(t, ("patient", p), (param, "ge2021"), (param, "lt2021-03-05")))
        if patients:
            out.append(q(t, ("patient", ",".join(patients[:2]))))
    return out


def result_queries(store):
    """Paging, sort, summary, total, elements, include and revinclude."""
    p0 = clinical_patients(store, "Observation")[0]
    out = [q("Patient", ("name", "hol"), extra=[("_count", "3")]),
           q("Patient", ("name", "hol,muñ,reyes"), extra=[("_count", "3"), ("_total", "accurate")]),
           q("Patient", ("name", "hol"), extra=[("_summary", "count")]),
           q("Patient", ("name", "hol"), extra=[("_count", "0")]),
           q("Patient", ("name", "hol"), extra=[("_elements", "name,gender")]),
           q("Observation", ("patient", p0), extra=[("_count", "3")]),
           q("Observation", ("patient", p0), extra=[("_summary", "count")]),
           q("Observation", ("patient", p0), extra=[("_count", "4"), ("_total", "accurate")])]
    for s in ["family", "-family", "birthdate", "-birthdate", "_id", "-_id", "_lastUpdated",
              "-_lastUpdated", "birthdate,-_id", "-family,birthdate"]:
        out.append(q("Patient", ("name", "hol,muñ,reyes,kato,zoe"),
                     extra=[("_sort", s), ("_count", "3")]))
    for s in ["date", "-date", "-date,_id", "_id"]:
        out.append(q("Observation", ("patient", p0), extra=[("_sort", s), ("_count", "3")]))
        out.append(q("Encounter", ("patient", p0), extra=[("_sort", s)]))
    inc = [("Observation", "Observation:patient"), ("Observation", "Observation:subject"),
           ("Encounter", "Encounter:patient"), ("Condition", "Condition:patient"),
           ("DiagnosticReport", "DiagnosticReport:patient"),
           ("MedicationRequest", "MedicationRequest:medication"),
           ("MedicationRequest", "MedicationRequest:patient")]
    for t, what in inc:
        out.append(q(t, ("patient", p0), extra=[("_include", what), ("_count", "3")]))
    for what in ["Patient:general-practitioner", "Patient:organization"]:
        out.append(q("Patient", ("name", "hol,muñ,reyes"), extra=[("_include", what)]))
    fixture_patients = [k for k in store.of_type("Patient") if store.phase[k] == 0]
    for what in ["Observation:patient", "Observation:subject", "Encounter:patient",
                 "Condition:patient", "Provenance:target"]:
        out.append(q("Patient", ("_id", ",".join(x.split("/")[1] for x in [p0] + fixture_patients)),
                     extra=[("_revinclude", what), ("_count", "2")]))
    return out


def all_queries(store, split):
    return (name_queries(store) + patient_field_queries(store) + last_updated_queries(store, split)
            + clinical_queries(store) + result_queries(store))
