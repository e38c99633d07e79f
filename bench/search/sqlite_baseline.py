#!/usr/bin/env python3
"""The physical baseline of the search benchmark (issue 22): the same three searches as SQL
on plaintext tables in SQLite, same data, same values (queries.search_params).

    sqlite_baseline.py DATADIR DB [COUNT]

Builds DB once (kept as a cache; WAL, indexes made for these searches): patient(id, json,
family, birthdate), patient_name(norm, patient) with every normalized family and given
(the contract's `name`), observation(id, patient, category, date, json). Each search returns
the first page like the server (50 resources, their JSON fetched). Runs COUNT of each one (after
the same COUNT untimed, to warm up) on one connection (the analogue of wrk's 1 connection) and prints:
  SQLITE kind=name n=300 p50=0.10 p95=0.20 p99=0.30 rows=12.3      (ms; mean rows a search)
"""
import json
import os
import sqlite3
import sys
import time

import queries

PAGE = 50
SCHEMA = """
CREATE TABLE patient (id TEXT PRIMARY KEY, family TEXT, birthdate TEXT, json TEXT);
CREATE TABLE patient_name (norm TEXT, patient TEXT);
CREATE TABLE observation (id TEXT PRIMARY KEY, patient TEXT, category TEXT, date TEXT,
                          json TEXT);
"""
INDEXES = """
CREATE INDEX patient_family ON patient (family, birthdate);
CREATE INDEX patient_name_norm ON patient_name (norm, patient);
CREATE INDEX observation_search ON observation (patient, category, date);
ANALYZE;
"""
SQL = {
    "name": """SELECT DISTINCT p.id, p.json FROM patient_name n JOIN patient p ON p.id = n.patient
               WHERE n.norm >= ? AND n.norm < ? LIMIT ?""",
    "family": """SELECT id, json FROM patient WHERE family >= ? AND family < ?
                   AND birthdate >= ? AND birthdate < ? LIMIT ?""",
    "obs": """SELECT id, json FROM observation WHERE patient = ? AND category = ?
                AND date >= ? AND date < ? LIMIT ?""",
}


def build(datadir, db):
    tmp = db + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    con = sqlite3.connect(tmp)
    con.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;" + SCHEMA)
    with open(f"{datadir}/patients.ndjson") as f:
        for line in f:
            p = json.loads(line)
            n = p["name"][0]
            con.execute("INSERT INTO patient VALUES (?,?,?,?)",
                        (p["id"], queries.norm(n["family"]), p["birthDate"], line))
            con.executemany("INSERT INTO patient_name VALUES (?,?)",
                            [(w, p["id"]) for w in {queries.norm(x) for x in
                                                    [n["family"], *n["given"]]}])
    with open(f"{datadir}/observations.ndjson") as f:
        rows = ((o["id"], o["subject"]["reference"][8:],
                 o["category"][0]["coding"][0]["code"], o["effectiveDateTime"], line)
                for line in f for o in [json.loads(line)])
        con.executemany("INSERT INTO observation VALUES (?,?,?,?,?)", rows)
    con.executescript(INDEXES)
    con.commit()
    con.close()
    os.replace(tmp, db)


def args_of(kind, v):
    """The SQL parameters: a prefix is the range [p, p + U+10FFFF)."""
    if kind == "name":
        p = queries.norm(v["name"])
        return (p, p + "\U0010ffff", PAGE)
    if kind == "family":
        p = queries.norm(v["family"])
        return (p, p + "\U0010ffff", v["birthdate_ge"], v["birthdate_lt"], PAGE)
    return (f"p{v['patient']}", v["category"], v["date_ge"], v["date_lt"], PAGE)


def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p / 100))]


def main():
    datadir, db = sys.argv[1:3]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    if not os.path.exists(db):
        t = time.time()
        build(datadir, db)
        print(f"SQLITE built {db} in {time.time() - t:.1f} s", file=sys.stderr)
    params = queries.search_params(queries.read_patients(datadir), count)
    con = sqlite3.connect(db)
    for kind in queries.KINDS:
        for v in params[kind]:  # warm up, as the server gets a warm-up run
            con.execute(SQL[kind], args_of(kind, v)).fetchall()
        times, rows = [], 0
        for v in params[kind]:
            args = args_of(kind, v)
            t = time.perf_counter()
            rows += len(con.execute(SQL[kind], args).fetchall())
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(f"SQLITE kind={kind} n={len(times)} p50={pct(times, 50):.3f} "
              f"p95={pct(times, 95):.3f} p99={pct(times, 99):.3f} rows={rows / len(times):.1f}")


if __name__ == "__main__":
    main()
