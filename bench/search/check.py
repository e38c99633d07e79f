#!/usr/bin/env python3
"""Do the server's answers agree with the SQLite baseline's? Before timing anything, the
first COUNT searches of each kind are asked of the server (first page, _count=50) and of
SQLite; the server's ids are mapped back to the generator's. A search agrees when both
return the same patients (name, family) or the same number of Observations (obs), taking
the page limit into account (both capped at 50: then only the count is compared).

    check.py URL CAFILE TOKEN DATADIR IDS DB [COUNT]

Prints: CHECK kind=name agree=20/20 http=200:20  (and the first disagreement, if any)
"""
import json
import sqlite3
import sys
from collections import Counter

import queries
import sqlite_baseline
from load import Client


def page_ids(body):
    return [e["resource"]["id"] for e in json.loads(body).get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"]


def main():
    url, cafile, token, datadir, ids_path, db = sys.argv[1:7]
    count = int(sys.argv[7]) if len(sys.argv) > 7 else 20
    patients = queries.read_patients(datadir)
    ids = queries.read_ids(ids_path, len(patients))
    to_gen = {p: f"p{i}" for i, (p, _) in enumerate(ids)}
    params = queries.search_params(patients, count)
    client = Client(url, cafile, "", "")
    Client.token, Client.token_at = token, float("inf")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for kind in queries.KINDS:
        agree, statuses, first_bad = 0, Counter(), None
        for v in params[kind]:
            path = queries.search_path(kind, v, lambda i: ids[i][0])
            status, body = client.fhir("GET", path + "&_count=50")
            statuses[status] += 1
            want = [r[0] for r in con.execute(sqlite_baseline.SQL[kind],
                                              sqlite_baseline.args_of(kind, v))]
            if status != 200:
                first_bad = first_bad or f"{path}: HTTP {status} {body[:200]!r}"
                continue
            got = page_ids(body)
            if kind == "obs" or len(want) >= 50:
                ok = len(got) == len(want)
            else:
                ok = sorted(to_gen.get(g, g) for g in got) == sorted(want)
            agree += ok
            if not ok:
                first_bad = first_bad or f"{path}: {len(got)} entries, SQLite {len(want)}"
        print(f"CHECK kind={kind} agree={agree}/{len(params[kind])} http="
              + ",".join(f"{s}:{n}" for s, n in sorted(statuses.items())))
        if first_bad:
            print(f"CHECK   first disagreement: {first_bad}")


if __name__ == "__main__":
    main()
