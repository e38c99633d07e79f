#!/usr/bin/env python3
"""Do the server's answers agree with the SQLite baseline's, and which searches does it
answer? Every search of REQDIR/<kind>.tsv (queries.py's, COUNT of each kind) is asked once of
the server (first page, 50) and of SQLite; the server's ids are mapped back to the
generator's. A search agrees when both return the same patients (name, family) or the same
number of Observations (obs), or, when SQLite fills the page (50), the same count. Searches
the server refuses (e.g. 400 too-costly) are left out of REQDIR/<kind>.tsv afterwards (the
full list stays in <kind>-all.tsv), so the timed runs measure answered searches only; the
refusals are reported here. Bounded: at most BENCH_CHECK_SECONDS (default 90) a kind (at
least 10 searches); the searches not reached then are left out of the timed runs too.

    check.py URL CAFILE TOKEN DATADIR IDS DB REQDIR

Prints: CHECK kind=name agree=290/290 http=200:290,400:10  (and the first disagreement)
"""
import json
import os
import sqlite3
import sys
import time
from collections import Counter

import queries
import sqlite_baseline
from load import Client


def page_ids(body):
    return [e["resource"]["id"] for e in json.loads(body).get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"]


def agrees(kind, got, want, to_gen):
    if kind == "obs" or len(want) >= sqlite_baseline.PAGE:
        return len(got) == len(want)
    return sorted(to_gen.get(g, g) for g in got) == sorted(want)


def check_kind(kind, client, con, params, paths, to_gen):
    agree, statuses, first_bad, answered, times = 0, Counter(), None, [], []
    deadline = time.time() + int(os.environ.get("BENCH_CHECK_SECONDS", "90"))
    for n, (v, path) in enumerate(zip(params, paths)):
        if n >= 10 and time.time() > deadline:
            print(f"CHECK   {kind}: only {n} of {len(paths)} searches asked within "
                  f"BENCH_CHECK_SECONDS; the timed runs use those", flush=True)
            break
        t = time.perf_counter()
        status, body = client.fhir("GET", path)
        times.append((time.perf_counter() - t) * 1000)
        statuses[status] += 1
        if status != 200:
            first_bad = first_bad or f"{path}: HTTP {status} {body[:200]!r}"
            continue
        answered.append(path)
        want = [r[0] for r in con.execute(sqlite_baseline.SQL[kind],
                                          sqlite_baseline.args_of(kind, v))]
        got = page_ids(body)
        if agrees(kind, got, want, to_gen):
            agree += 1
        else:
            first_bad = first_bad or f"{path}: {len(got)} entries, SQLite {len(want)}"
    times.sort()
    p50, p95 = (sqlite_baseline.pct(times, p) for p in (50, 95))
    print(f"CHECK kind={kind} agree={agree}/{len(answered)} http="
          + ",".join(f"{s}:{n}" for s, n in sorted(statuses.items()))
          + f" (first asks, one at a time: p50 {p50:.1f} ms, p95 {p95:.1f} ms)", flush=True)
    if first_bad:
        print(f"CHECK   first disagreement: {first_bad}", flush=True)
    return answered


def main():
    url, cafile, token, datadir, ids_path, db, reqdir = sys.argv[1:8]
    patients = queries.read_patients(datadir)
    ids = queries.read_ids(ids_path, len(patients))
    to_gen = {p: f"p{i}" for i, (p, _) in enumerate(ids)}
    client = Client(url, cafile, "", "")
    Client.token, Client.token_at = token, float("inf")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for kind in queries.KINDS:
        with open(f"{reqdir}/{kind}.tsv") as f:
            paths = [line.rstrip("\n") for line in f]
        params = queries.search_params(patients, len(paths))[kind]
        answered = check_kind(kind, client, con, params, paths, to_gen)
        if answered:
            os.replace(f"{reqdir}/{kind}.tsv", f"{reqdir}/{kind}-all.tsv")
            with open(f"{reqdir}/{kind}.tsv", "w") as f:
                f.writelines(p + "\n" for p in answered)


if __name__ == "__main__":
    main()
