"""The FHIR search contract of issue 22 (docs: /work/briefs/contract.md, restated in
tests/search.rs), implemented a second time, independently of the server, over the plain
fixture files: which resources a search must return, and in which order.

An answer is a pair of sets (must, may): the ids every correct server returns, and the ids a
correct server may return. They differ only where the contract leaves room (the width of `ap`,
Soundex of letters outside a-z, sort keys of names with accents).
"""
import json
import unicodedata
from datetime import datetime, timedelta, timezone

US = 1_000_000
INF = 10**20
DAY = 86400 * US


def norm(s):
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if unicodedata.category(c) != "Mn").lower().strip()


def soundex(s):
    """American Soundex of the letters a-z of `s` (normalized); None if there are none."""
    letters = [c for c in norm(s) if "a" <= c <= "z"]
    if not letters:
        return None
    codes = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"),
             **dict.fromkeys("dt", "3"), "l": "4", **dict.fromkeys("mn", "5"), "r": "6"}
    out, last = letters[0].upper(), codes.get(letters[0], "")
    for c in letters[1:]:
        code = codes.get(c, "")
        if code and code != last:
            out += code
        if c not in "hw":
            last = code
    return (out + "000")[:4]


def soundex_exact(s):
    """Whether `s` normalizes to letters a-z (and separators) only: its Soundex is certain."""
    return all("a" <= c <= "z" or c in " -'." for c in norm(s))


# --- dates ---------------------------------------------------------------------------------

def _epoch_us(dt):
    return int((dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))


def date_range(v):
    """[lo, hi) in microseconds for a FHIR date, dateTime or instant (no zone = UTC)."""
    if len(v) == 4:
        y = int(v)
        return _epoch_us(datetime(y, 1, 1, tzinfo=timezone.utc)), \
            _epoch_us(datetime(y + 1, 1, 1, tzinfo=timezone.utc))
    if len(v) == 7:
        y, m = int(v[:4]), int(v[5:7])
        lo = datetime(y, m, 1, tzinfo=timezone.utc)
        hi = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)
        return _epoch_us(lo), _epoch_us(hi)
    if len(v) == 10:
        lo = datetime.fromisoformat(v).replace(tzinfo=timezone.utc)
        return _epoch_us(lo), _epoch_us(lo) + DAY
    body = v.replace("Z", "+00:00")
    dt = datetime.fromisoformat(body)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    frac = body[19:].split("+")[0].split("-")[0]
    digits = len(frac) - 1 if frac.startswith(".") else 0
    if len(body) >= 16 and body[16:17] != ":":
        step = 60 * US  # hh:mm without seconds
    else:
        step = US // (10 ** min(digits, 6))
    lo = _epoch_us(dt)
    return lo, lo + step


def period_range(p):
    lo = date_range(p["start"])[0] if p.get("start") else -INF
    hi = date_range(p["end"])[1] if p.get("end") else INF
    return lo, hi


PREFIXES = ["eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap"]


def split_prefix(value):
    if value[:2] in PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def date_matches(prefix, p, f, now_us, widen=None):
    (plo, phi), (flo, fhi) = p, f
    eq = plo <= flo and fhi <= phi
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return not eq
    if prefix == "gt":
        return fhi > phi
    if prefix == "lt":
        return flo < plo
    if prefix == "ge":
        return fhi > phi or eq
    if prefix == "le":
        return flo < plo or eq
    if prefix == "sa":
        return flo >= phi
    if prefix == "eb":
        return fhi <= plo
    if prefix == "ap":
        return flo < phi + widen and fhi > plo - widen
    raise ValueError(prefix)


def ap_widths(p, now_us):
    """The least and the most `ap` may widen the param range (distance to its lo or hi)."""
    d = [abs(now_us - p[0]), abs(now_us - p[1])]
    return max(DAY, min(d) // 10), max(DAY, max(d) // 10) + DAY


# --- the loaded resources ------------------------------------------------------------------

class Store:
    """Every resource of the fixture files, references resolved as the server resolves them
    (urn:uuid fullUrls, conditional `Patient?identifier=` references)."""

    def __init__(self, files, phases):
        self.res = {}
        self.phase = {}
        urns = {}
        for path, phase in zip(files, phases):
            for full, r in self._entries(path):
                key = f"{r['resourceType']}/{r['id']}"
                self.res[key] = r
                self.phase[key] = phase
                if full:
                    urns[full] = key
        self.urns = urns

    @staticmethod
    def _entries(path):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if doc["resourceType"] == "Bundle":
            return [(e.get("fullUrl"), e["resource"]) for e in doc.get("entry", [])]
        return [(None, doc)]

    def of_type(self, t):
        return {k: r for k, r in self.res.items() if r["resourceType"] == t}

    def resolve(self, ref):
        if not ref:
            return None
        if ref in self.urns:
            return self.urns[ref]
        if ref.startswith("Patient?identifier="):
            system, _, value = ref.split("=", 1)[1].rpartition("|")
            for k, r in self.of_type("Patient").items():
                if any(i.get("value") == value and (not system or i.get("system") == system)
                       for i in r.get("identifier", [])):
                    return k
            return None
        if "?" in ref:
            return None
        parts = ref.split("/")
        if "_history" in parts:
            parts = parts[:parts.index("_history")]
        return "/".join(parts[-2:]) if len(parts) >= 2 else None


def load_store(files, phases):
    return Store(files, phases)


# --- what each search parameter reads --------------------------------------------------------

def _names(r):
    return r.get("name", [])


def name_strings(r):
    out = []
    for n in _names(r):
        out += [n["family"]] if n.get("family") else []
        for k in ("given", "prefix", "suffix"):
            out += n.get(k, [])
        out += [n["text"]] if n.get("text") else []
    return out


def codings(cc):
    """(system, code) of a CodeableConcept or a list of them."""
    if cc is None:
        return []
    if isinstance(cc, list):
        return [c for x in cc for c in codings(x)]
    return [(c.get("system"), c["code"]) for c in cc.get("coding", []) if "code" in c]


def plain(code):
    return [("", code, "plain")] if code is not None else []


def identifiers(r):
    return [(i.get("system"), i["value"]) for i in r.get("identifier", []) if "value" in i]


def dates_of(r, *fields):
    out = []
    for f in fields:
        v = r.get(f)
        if v is None:
            continue
        out.append(period_range(v) if isinstance(v, dict) else date_range(v))
    return out


def refs(store, *values):
    out = []
    for v in values:
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, dict) and store.resolve(x.get("reference")):
                out.append(store.resolve(x.get("reference")))
    return out


def subject_patient(store, r, field="subject"):
    return [k for k in refs(store, r.get(field)) if k.startswith("Patient/")]


S, T, D, R, TEL = "string", "token", "date", "reference", "telecom"


def common_params(kind_subject="subject"):
    return {
        "_id": (T, lambda s, r: plain(r["id"])),
        "identifier": (T, lambda s, r: identifiers(r)),
        "patient": (R, lambda s, r: subject_patient(s, r, kind_subject)),
    }


def clinical(extra, subject=True):
    p = common_params("subject" if subject else "patient")
    if subject:
        p["subject"] = (R, lambda s, r: refs(s, r.get("subject")))
    p.update(extra)
    return p


PARAMS = {
    "Patient": {
        "_id": (T, lambda s, r: plain(r["id"])),
        "identifier": (T, lambda s, r: identifiers(r)),
        "name": (S, lambda s, r: name_strings(r)),
        "family": (S, lambda s, r: [n["family"] for n in _names(r) if n.get("family")]),
        "given": (S, lambda s, r: [g for n in _names(r) for g in n.get("given", [])]),
        "phonetic": ("phonetic", lambda s, r: [n["family"] for n in _names(r) if n.get("family")]
                     + [g for n in _names(r) for g in n.get("given", [])]),
        "birthdate": (D, lambda s, r: dates_of(r, "birthDate")),
        "gender": (T, lambda s, r: plain(r.get("gender"))),
        "address-postalcode": (S, lambda s, r: [a["postalCode"] for a in r.get("address", [])
                                                if "postalCode" in a]),
        "address-city": (S, lambda s, r: [a["city"] for a in r.get("address", []) if "city" in a]),
        "telecom": (TEL, lambda s, r: r.get("telecom", [])),
        "phone": (TEL, lambda s, r: [c for c in r.get("telecom", [])
                                     if c.get("system") in ("phone", "sms")]),
        "email": (TEL, lambda s, r: [c for c in r.get("telecom", []) if c.get("system") == "email"]),
        "general-practitioner": (R, lambda s, r: refs(s, r.get("generalPractitioner"))),
        "organization": (R, lambda s, r: refs(s, r.get("managingOrganization"))),
    },
    "Observation": clinical({
        "category": (T, lambda s, r: codings(r.get("category"))),
        "code": (T, lambda s, r: codings(r.get("code"))),
        "date": (D, lambda s, r: dates_of(r, "effectiveDateTime", "effectivePeriod",
                                           "effectiveInstant")),
        "status": (T, lambda s, r: plain(r.get("status"))),
    }),
    "Condition": clinical({
        "category": (T, lambda s, r: codings(r.get("category"))),
        "clinical-status": (T, lambda s, r: codings(r.get("clinicalStatus"))),
        "code": (T, lambda s, r: codings(r.get("code"))),
        "onset-date": (D, lambda s, r: dates_of(r, "onsetDateTime", "onsetPeriod")),
    }),
    "Encounter": clinical({
        "date": (D, lambda s, r: dates_of(r, "period")),
        "status": (T, lambda s, r: plain(r.get("status"))),
        "class": (T, lambda s, r: [(r["class"].get("system"), r["class"]["code"])]
                  if r.get("class") else []),
        "type": (T, lambda s, r: codings(r.get("type"))),
    }),
    "DiagnosticReport": clinical({
        "category": (T, lambda s, r: codings(r.get("category"))),
        "code": (T, lambda s, r: codings(r.get("code"))),
        "date": (D, lambda s, r: dates_of(r, "effectiveDateTime", "effectivePeriod")),
        "status": (T, lambda s, r: plain(r.get("status"))),
    }),
    "Immunization": clinical({
        "date": (D, lambda s, r: dates_of(r, "occurrenceDateTime")),
        "status": (T, lambda s, r: plain(r.get("status"))),
        "vaccine-code": (T, lambda s, r: codings(r.get("vaccineCode"))),
    }, subject=False),
    "MedicationRequest": clinical({
        "intent": (T, lambda s, r: plain(r.get("intent"))),
        "status": (T, lambda s, r: plain(r.get("status"))),
        "medication": (R, lambda s, r: refs(s, r.get("medicationReference"))),
        "code": (T, lambda s, r: codings(r.get("medicationCodeableConcept"))),
        "authoredon": (D, lambda s, r: dates_of(r, "authoredOn")),
    }),
    "AllergyIntolerance": clinical({
        "clinical-status": (T, lambda s, r: codings(r.get("clinicalStatus"))),
        "code": (T, lambda s, r: codings(r.get("code"))),
    }, subject=False),
    "Procedure": clinical({
        "date": (D, lambda s, r: dates_of(r, "performedDateTime", "performedPeriod")),
        "code": (T, lambda s, r: codings(r.get("code"))),
        "status": (T, lambda s, r: plain(r.get("status"))),
    }),
    "DocumentReference": clinical({
        "category": (T, lambda s, r: codings(r.get("category"))),
        "type": (T, lambda s, r: codings(r.get("type"))),
        "date": (D, lambda s, r: dates_of(r, "date")),
        "status": (T, lambda s, r: plain(r.get("status"))),
    }),
}
for _t in PARAMS:
    PARAMS[_t]["_lastUpdated"] = ("lastUpdated", None)

# _include / _revinclude: (source type, param) -> the param's reference reader.
INCLUDES = {
    ("Observation", "patient"), ("Observation", "subject"), ("Encounter", "patient"),
    ("MedicationRequest", "medication"), ("MedicationRequest", "patient"),
    ("Condition", "patient"), ("DiagnosticReport", "patient"),
    ("Patient", "general-practitioner"), ("Patient", "organization"),
}
REVINCLUDES = {
    ("Observation", "patient"), ("Observation", "subject"), ("Encounter", "patient"),
    ("Condition", "patient"), ("Provenance", "target"),
}
PROVENANCE_TARGET = (R, lambda s, r: refs(s, r.get("target")))


# --- matching --------------------------------------------------------------------------------

def digits(s):
    return "".join(c for c in s if c.isdigit())


def phone_eq(a, b):
    a, b = digits(a), digits(b)
    return a == b or (len(a) >= 10 and len(b) >= 10 and a[-10:] == b[-10:])


def contact_eq(cp, value, system=None):
    if system is not None and cp.get("system") != system:
        return False
    v = cp.get("value", "")
    if cp.get("system") in ("phone", "sms", "fax", "pager"):
        return phone_eq(v, value)
    if cp.get("system") == "email":
        return v.lower() == value.lower()
    return v == value


def token_eq(value, q):
    system, code = (q.split("|", 1) if "|" in q else (None, q))
    if len(value) == 3:  # a plain code: the system never counts
        return value[1] == code
    vs, vc = value
    if vc != code:
        return False
    if system is None:
        return True
    if system == "":
        return not vs
    return vs == system


def ref_eq(key, q):
    if "/" in q:
        return key == "/".join(q.rstrip("/").split("/")[-2:])
    return key.split("/", 1)[1] == q


def one_value(kind, values, modifier, q, ctx):
    """(must, may) for one comma-free param value against a resource's values."""
    if kind == S:
        if modifier == "exact":
            hit = any(v == q for v in values)
        else:
            hit = any(norm(v).startswith(norm(q)) for v in values)
        return hit, hit
    if kind == "phonetic":
        sx = soundex(q)
        sure = any(soundex(v) == sx for v in values if soundex_exact(v))
        maybe = sure or any(not soundex_exact(v) for v in values)
        return sure, maybe
    if kind == T:
        hit = any(token_eq(v, q) for v in values)
        return hit, hit
    if kind == R:
        hit = any(ref_eq(v, q) for v in values)
        return hit, hit
    if kind == TEL:
        system, value = q.split("|", 1) if "|" in q and ctx["param"] == "telecom" else (None, q)
        hit = any(contact_eq(cp, value, system) for cp in values)
        return hit, hit
    if kind in (D, "lastUpdated"):
        prefix, v = split_prefix(q)
        p = date_range(v)
        if prefix == "ap":
            lo_w, hi_w = ap_widths(p, ctx["now"])
            return (any(date_matches("ap", p, f, 0, lo_w) for f in values),
                    any(date_matches("ap", p, f, 0, hi_w) for f in values))
        hit = any(date_matches(prefix, p, f, ctx["now"]) for f in values)
        return hit, hit
    raise ValueError(kind)


def last_updated(store, key, split_us):
    """Where a resource's meta.lastUpdated lies: before `split_us` (first phase) or a second
    or more after it (second phase) — all a query about it may rely on."""
    t = split_us - US // 2 if store.phase[key] == 0 else split_us + US + US // 2
    return [(t, t + 1000)]


def matches(store, rtype, key, criteria, ctx):
    """(must, may) for a resource against [(param, modifier, value)]: params ANDed, comma OR."""
    r = store.res[key]
    must = may = True
    for param, modifier, value in criteria:
        if param == "_lastUpdated":
            kind, values = "lastUpdated", last_updated(store, key, ctx["split"])
        elif rtype == "Provenance" and param == "target":
            kind, values = PROVENANCE_TARGET[0], PROVENANCE_TARGET[1](store, r)
        else:
            kind, read = PARAMS[rtype][param]
            values = read(store, r)
        c = dict(ctx, param=param)
        answers = [one_value(kind, values, modifier, q, c) for q in value.split(",")]
        must = must and any(a[0] for a in answers)
        may = may and any(a[1] for a in answers)
    return must, may


def search(store, rtype, criteria, ctx):
    """(must, may): the keys `Type/id` a search must and may return."""
    must, may = set(), set()
    for key in store.of_type(rtype):
        m, y = matches(store, rtype, key, criteria, ctx)
        if m:
            must.add(key)
        if y:
            may.add(key)
    return must, may


# --- _sort -----------------------------------------------------------------------------------

def sort_keys(store, rtype, key, field, variant):
    """The value a resource sorts by (None: it has none), in one reading of the contract."""
    r = store.res[key]
    if field == "_id":
        return r["id"]
    if field == "birthdate":
        d = dates_of(r, "birthDate")
        return d[0][0] if d else None
    if field == "date":
        d = PARAMS[rtype]["date"][1](store, r)
        if not d:
            return None
        return min(x[0] for x in d) if variant == 0 else max(x[1] for x in d)
    if field == "family":
        fams = [n["family"] for n in _names(r) if n.get("family")]
        if not fams:
            return None
        return norm(fams[0]) if variant == 0 else fams[0]
    raise ValueError(field)


def sorted_orders(store, rtype, keys, sort):
    """The orders a correct server may return `keys` in for `_sort=sort` (one per reading)."""
    fields = sort.split(",")
    orders = []
    for variant in (0, 1):
        def k(key):
            parts = []
            for f in fields:
                desc = f.startswith("-")
                v = sort_keys(store, rtype, key, f.lstrip("-"), variant)
                parts.append(_rank(v, desc))
            return parts + [store.res[key]["id"]]
        orders.append(sorted(keys, key=k))
    return orders


class _Desc:
    def __init__(self, v):
        self.v = v

    def __lt__(self, o):
        return self.v > o.v

    def __eq__(self, o):
        return self.v == o.v


def _rank(v, desc):
    """Missing values last in either direction."""
    if v is None:
        return (1, 0)
    return (0, _Desc(v) if desc else v)
