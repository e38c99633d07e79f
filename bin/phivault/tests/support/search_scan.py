#!/usr/bin/env python3
"""Byte scan of a vault's stores for the search fixtures' PHI (tests/search.rs, issue 22).

usage: search_scan.py ROOT DIR [PG_URL PG_PREFIX]

Needles (from ROOT's testdata/fhir and testdata/search): every patient's names and their
prefixes of 3 or more letters (as written and lowercase, accents kept and dropped), birth dates
(as written, as YYYYMMDD, as Unix seconds and milliseconds), postal codes, phones (as written
and digits only), emails (as written and lowercase), identifier values, and the clinical
records' codes and observation values as text.

Where they are looked for:
- every file under DIR, raw bytes (SQLite files with their -wal and -shm, the rest), for
  needles of 6 or more bytes (shorter ones turn up by chance in kilobytes of ciphertext);
- every cell of every table of each SQLite store (a copy, opened with its WAL), and, with
  PG_URL, every cell of a `pg_dump` of the schemas PG_PREFIX_{identity,clinical,control,audit}:
  a text cell holds a needle of 5+ bytes anywhere or a shorter one as a whole word; a text
  cell that is one run of 16+ hex or base64 characters (an id, a digest) holds a needle of 8+
  characters or is one; a binary cell holds a 5+ byte needle anywhere or is a shorter one
  exactly; an integer cell equals a numeric needle.
Prints one JSON object: {"needles": n, "hits": [{"where", "needle", "kind"}]}.
"""
import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unicodedata
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_oracle as oracle  # noqa: E402

INTEGER = re.compile(r"-?[1-9][0-9]*")
ENCODED = re.compile(r"^[A-Za-z0-9+/=_-]{16,}$")


def strip_marks(s):
    return "".join(c for c in unicodedata.normalize("NFKD", s) if unicodedata.category(c) != "Mn")


def patient_needles(r, add):
    for n in r.get("name", []):
        for w in ([n["family"]] if n.get("family") else []) + n.get("given", []):
            for form in {w, w.lower(), strip_marks(w), strip_marks(w).lower(), oracle.norm(w)}:
                add(form, "name")
                for i in range(3, len(form)):
                    add(form[:i], "name prefix")
    if r.get("birthDate"):
        b = r["birthDate"]
        add(b, "birth date")
        if len(b) == 10:
            add(b.replace("-", ""), "birth date", numeric=True)
            lo = oracle.date_range(b)[0] // oracle.US
            add(str(lo), "birth date (unix s)", numeric=True)
            add(str(lo * 1000), "birth date (unix ms)", numeric=True)
    for a in r.get("address", []):
        if a.get("postalCode"):
            add(a["postalCode"], "postal code")
        for line in a.get("line", []):
            add(line, "address line")
    for c in r.get("telecom", []):
        v = c.get("value", "")
        add(v, c.get("system", "telecom"))
        add(v.lower(), c.get("system", "telecom"))
        if c.get("system") in ("phone", "sms"):
            add(oracle.digits(v), "phone digits", numeric=True)
    for i in r.get("identifier", []):
        if i.get("value"):
            add(i["value"], "identifier")


def clinical_needles(r, add):
    def walk(v):
        if isinstance(v, dict):
            if "coding" in v:
                for c in v["coding"]:
                    code = c.get("code", "")
                    if len(code) >= 5 and any(ch.isdigit() for ch in code):
                        add(code, "code")
            if "value" in v and isinstance(v["value"], (int, float)) and "unit" in v:
                if len(str(v["value"])) >= 4:
                    add(str(v["value"]), "observation value")
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(r)


def needles(root):
    out = {}

    def add(s, kind, numeric=False):
        s = s.strip()
        if len(s) >= 3 and s not in out:
            out[s] = {"kind": kind, "numeric": numeric and s.lstrip("-").isdigit()}

    paths = glob.glob(os.path.join(root, "testdata/fhir/*.json")) + \
        glob.glob(os.path.join(root, "testdata/search/*.json"))
    store = oracle.load_store(sorted(paths), [0] * len(paths))
    for r in store.res.values():
        if r["resourceType"] == "Patient":
            patient_needles(r, add)
        elif r["resourceType"] not in ("Practitioner", "Organization", "Medication"):
            clinical_needles(r, add)
    return out


def word_in(text, needle):
    i = text.find(needle)
    while i >= 0:
        before = text[i - 1] if i > 0 else " "
        after = text[i + len(needle)] if i + len(needle) < len(text) else " "
        if not before.isalnum() and not after.isalnum():
            return True
        i = text.find(needle, i + 1)
    return False


def json_hits(doc, ns):
    """The needles a JSON text cell (an audit event, say) holds: in its strings, or as the
    whole of one of its integers (a sequence number is not a year); times are skipped."""
    if isinstance(doc, dict):
        return [n for k, v in doc.items() if k not in ("time", "timestamp")
                for n in json_hits(v, ns)]
    if isinstance(doc, list):
        return [n for v in doc for n in json_hits(v, ns)]
    if isinstance(doc, str):
        return cell_hits(doc, ns)
    if isinstance(doc, int) and not isinstance(doc, bool):
        return [n for n, m in ns.items() if m["numeric"] and str(doc) == n]
    return []


def cell_hits(cell, ns):
    """The needles a table cell holds."""
    if isinstance(cell, str) and cell[:1] in "{[":
        try:
            return json_hits(json.loads(cell), ns)
        except ValueError:
            pass
    if isinstance(cell, int):
        return [n for n, m in ns.items() if m["numeric"] and str(cell) == n]
    if isinstance(cell, str) and not ENCODED.match(cell):
        return [n for n in ns if (n in cell if len(n.encode()) >= 5 else word_in(cell, n))]
    if isinstance(cell, str):
        return [n for n in ns if (n in cell if len(n) >= 8 else cell == n)]
    if isinstance(cell, (bytes, bytearray)):
        cell = bytes(cell)
        return [n for n in ns if (n.encode() in cell if len(n.encode()) >= 5
                                  else cell == n.encode())]
    return []


def sqlite_cells(path):
    with tempfile.TemporaryDirectory() as tmp:
        for f in glob.glob(path + "*"):
            shutil.copy(f, os.path.join(tmp, os.path.basename(f)))
        db = sqlite3.connect(os.path.join(tmp, os.path.basename(path)))
        db.text_factory = bytes
        tables = [t[0].decode() for t in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for t in tables:
            for row in db.execute(f'SELECT * FROM "{t}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        try:
                            cell = cell.decode("utf-8")
                        except UnicodeDecodeError:
                            pass
                    yield f"{os.path.basename(path)}:{t}", cell
        db.close()


def pg_cells(url, prefix):
    for store in ["identity", "clinical", "control", "audit"]:
        run = subprocess.run(["pg_dump", "--no-owner", "--data-only", "--schema",
                              f"{prefix}_{store}", url], capture_output=True)
        if run.returncode != 0 and b"no matching schemas" in run.stderr:
            continue
        if run.returncode != 0:
            sys.exit("pg_dump: " + run.stderr.decode("utf-8", "replace"))
        dump = run.stdout
        table, copying = None, False
        for line in dump.decode("utf-8", "replace").split("\n"):
            if line.startswith("COPY "):
                table, copying = line.split(" ")[1], True
                continue
            if copying and line == "\\.":
                copying = False
                continue
            if not copying:
                continue
            for field in line.split("\t"):
                if field == "\\N":
                    continue
                if field.startswith("\\\\x"):
                    yield f"pg:{table}", bytes.fromhex(field[3:])
                elif INTEGER.fullmatch(field):
                    yield f"pg:{table}", int(field)  # a number column: compared whole
                else:
                    yield f"pg:{table}", field.replace("\\t", "\t").replace("\\n", "\n")


def scan(root, data, pg=None):
    ns = needles(root)
    hits = []
    for path in sorted(glob.glob(os.path.join(data, "**"), recursive=True)):
        if os.path.isfile(path):
            raw = open(path, "rb").read()
            for n, m in ns.items():
                b = n.encode()
                if len(b) >= 6 and b in raw:
                    hits.append({"where": os.path.relpath(path, data), "needle": n, "kind": m["kind"]})
    cells = []
    for path in sorted(glob.glob(os.path.join(data, "*.db"))):
        cells.append(sqlite_cells(path))
    if pg:
        cells.append(pg_cells(*pg))
    seen = set()
    for source in cells:
        for where, cell in source:
            for n in cell_hits(cell, ns):
                if (where, n) not in seen:
                    seen.add((where, n))
                    hit = {"where": where, "needle": n, "kind": ns[n]["kind"]}
                    if isinstance(cell, str):
                        i = cell.find(n)
                        hit["context"] = cell[max(0, i - 60):i + len(n) + 60]
                    hits.append(hit)
    return {"needles": len(ns), "hits": hits}


if __name__ == "__main__":
    a = sys.argv
    print(json.dumps(scan(a[1], a[2], (a[3], a[4]) if len(a) > 4 else None), ensure_ascii=False))
