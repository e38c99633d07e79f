#!/usr/bin/env python3
"""Drives the search suite (tests/search.rs) against a live phivault over HTTPS.

usage:
  search_check.py load  BASE CA TOKEN_FILE ROOT       loads the fixtures; prints {"split": T}
  search_check.py check BASE CA TOKEN_FILE ROOT T     runs every query; prints the report
  search_check.py expect ROOT TYPE QUERY              prints the ids a search must return

BASE is https://localhost:PORT/fhir, ROOT the repo. `load` sends testdata/fhir/*.json (phase 0),
waits, then testdata/search/*.json (phase 1), each file as one transaction Bundle; T is an
instant between the two phases (for _lastUpdated). `check` compares the ids every query returns
(over all its pages) with what search_oracle.py computes from the plain files, and prints one
JSON report: the number of queries, the parameters covered, and every mismatch.
Prints ids and queries, never a resource.
"""
import glob
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_oracle as oracle  # noqa: E402
from search_queries import all_queries  # noqa: E402


class Api:
    def __init__(self, base, ca, token):
        self.base = base.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.token = token

    def call(self, method, path, body=None, ctype=None):
        url = self.base + ("/" + path.lstrip("/") if path else "")
        req = urllib.request.Request(url, data=body, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/fhir+json")
        if ctype:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=120) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, None


def files(root):
    return (sorted(glob.glob(os.path.join(root, "testdata/fhir/*.json"))),
            sorted(glob.glob(os.path.join(root, "testdata/search/*.json"))))


def store_of(root):
    phase0, phase1 = files(root)
    return oracle.load_store(phase0 + phase1, [0] * len(phase0) + [1] * len(phase1))


def as_transaction(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    entries = doc.get("entry", []) if doc["resourceType"] == "Bundle" else [{"resource": doc}]
    out = []
    for e in entries:
        r = e["resource"]
        x = {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        if e.get("fullUrl"):
            x["fullUrl"] = e["fullUrl"]
        out.append(x)
    return {"resourceType": "Bundle", "type": "transaction", "entry": out}


def load(api, root):
    phase0, phase1 = files(root)
    for i, path in enumerate(phase0 + phase1):
        if i == len(phase0):
            split = int(time.time()) + 1
            time.sleep(max(0.0, split + 1.3 - time.time()))
        body = json.dumps(as_transaction(path)).encode()
        status, answer = api.call("POST", "", body, "application/fhir+json")
        if status != 200:
            sys.exit(f"loading {os.path.basename(path)}: {status} {json.dumps(answer)[:400]}")
    return datetime.fromtimestamp(split, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def query_string(query):
    pairs = [(p + (":" + m if m else ""), v) for p, m, v in query["criteria"]] + query["extra"]
    return "&".join(f"{k}={urllib.parse.quote(v, safe=',:')}" for k, v in pairs)


def fetch_all(api, path, post_form=None):
    """Every page of a search: (status, first body, [pages])."""
    if post_form is not None:
        status, body = api.call("POST", path, post_form.encode(), "application/x-www-form-urlencoded")
    else:
        status, body = api.call("GET", path)
    if status != 200:
        return status, body, []
    pages = [body]
    while len(pages) < 200:
        nxt = [l["url"] for l in body.get("link", []) if l.get("relation") == "next"]
        if not nxt:
            break
        url = nxt[0]
        if url.startswith("http"):
            url = url.split("/fhir/", 1)[1]
        status, body = api.call("GET", url)
        if status != 200:
            return status, body, pages
        pages.append(body)
    return 200, pages[0], pages


def entries(pages, mode):
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for p in pages for e in p.get("entry", [])
            if e.get("search", {}).get("mode", "match") == mode]


def diag(body):
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        i = body.get("issue", [{}])[0]
        return f"{i.get('code')}: {i.get('diagnostics', '')[:160]}"
    return json.dumps(body)[:200]


def too_costly(status, body):
    return status == 400 and isinstance(body, dict) and any(
        i.get("code") == "too-costly" for i in body.get("issue", []))


class Checker:
    def __init__(self, api, store, split):
        self.api, self.store = api, store
        self.ctx = {"now": oracle.date_range(
            datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))[0],
            "split": oracle.date_range(split)[0]}
        self.report = {"queries": 0, "refused": [], "multi_page": 0, "covered": {},
                       "nonempty": 0, "mismatches": [], "checks": {}}

    def bad(self, qs, what, **detail):
        self.report["mismatches"].append({"query": qs, "problem": what, **detail})

    def count(self, name):
        self.report["checks"][name] = self.report["checks"].get(name, 0) + 1

    def run(self, query, post=False):
        t = query["type"]
        qs = f"{t}?{query_string(query)}"
        self.report["queries"] += 1
        must, may = oracle.search(self.store, t, query["criteria"], self.ctx)
        if post:
            status, first, pages = fetch_all(self.api, f"{t}/_search", query_string(query))
            qs = "POST " + qs
        else:
            status, first, pages = fetch_all(self.api, qs)
        if query["may_refuse"] and too_costly(status, first):
            self.report["refused"].append(qs)
            return
        if status != 200 or not pages:
            return self.bad(qs, f"status {status}", outcome=diag(first),
                            expected=sorted(must))
        for p, _, _ in query["criteria"]:
            self.report["covered"].setdefault(t, set()).add(p)
        got_list = entries(pages, "match")
        got = set(got_list)
        self.report["nonempty"] += bool(must)
        self.report["multi_page"] += len(pages) > 1
        if len(got) != len(got_list):
            self.bad(qs, "an id on more than one page or twice",
                     duplicates=sorted({k for k in got_list if got_list.count(k) > 1}))
        extra = dict(query["extra"])
        counted_only = extra.get("_summary") == "count" or extra.get("_count") == "0"
        if not counted_only and not (must <= got <= may):
            self.bad(qs, "wrong matches", missing=sorted(must - got), unexpected=sorted(got - may),
                     expected=sorted(must), got=sorted(got))
        self.results(qs, t, extra, (must, may), got, got_list, pages)
        self.includes(qs, extra, got, pages)

    def results(self, qs, t, extra, expected, got, got_list, pages):
        must, may = expected
        n = int(extra.get("_count", "50"))
        if any(len(entries([p], "match")) > n for p in pages):
            self.bad(qs, f"a page with more than _count={n} matches")
        if n == 0 and got:
            self.bad(qs, "_count=0 returned entries")
        if extra.get("_summary") == "count":
            self.count("_summary=count")
            total = pages[0].get("total")
            if not isinstance(total, int) or not len(must) <= total <= len(may) or got:
                self.bad(qs, "_summary=count", expected=len(must), total=total, entries=len(got))
            return
        total = pages[0].get("total")
        if extra.get("_total") == "accurate" or (len(pages) == 1 and n > 0):
            self.count("total")
            want = len(must) if n == 0 else len(got)
            if total != want:
                self.bad(qs, "total", expected=want, total=total)
        if len(must) > n > 0:
            self.count("paging")
            if len(pages) < 2:
                self.bad(qs, "more matches than _count but no next page", pages=len(pages))
        if "_elements" in extra:
            self.elements(qs, extra["_elements"].split(","), pages)
        if "_sort" in extra:
            self.sort(qs, t, extra["_sort"], got_list, pages)

    def elements(self, qs, keep, pages):
        self.count("_elements")
        allowed = set(keep) | {"resourceType", "id", "meta"}
        for p in pages:
            for e in p.get("entry", []):
                r = e["resource"]
                key = f"{r['resourceType']}/{r['id']}"
                if set(r) - allowed:
                    self.bad(qs, "_elements kept more", id=key, extra=sorted(set(r) - allowed))
                tags = [t.get("code") for t in r.get("meta", {}).get("tag", [])]
                if "SUBSETTED" not in tags:
                    self.bad(qs, "_elements without the SUBSETTED tag", id=key)
                for k in keep:
                    if r.get(k) != self.store.res[key].get(k):
                        self.bad(qs, f"_elements changed {k}", id=key)

    def sort(self, qs, t, sort, got_list, pages):
        self.count("_sort")
        if "_lastUpdated" in sort:
            desc = sort.startswith("-")
            seen = {f"{e['resource']['resourceType']}/{e['resource']['id']}":
                    oracle.date_range(e["resource"]["meta"]["lastUpdated"])[0]
                    for p in pages for e in p.get("entry", [])}
            want = sorted(got_list, key=lambda k: ((-seen[k]) if desc else seen[k], k))
            orders = [want]
            if got_list != want:
                stamps = {f"{e['resource']['resourceType']}/{e['resource']['id']}":
                          e["resource"]["meta"]["lastUpdated"] for p in pages for e in p["entry"]}
                return self.bad(qs, "order", expected=want, got=got_list,
                                last_updated=[stamps[k] for k in got_list])
        else:
            orders = oracle.sorted_orders(self.store, t, got_list, sort)
        if got_list not in orders:
            self.bad(qs, "order", expected=orders[0], got=got_list)

    def includes(self, qs, extra, got, pages):
        want = set()
        if "_include" in extra:
            src, param = extra["_include"].split(":")
            self.count("_include")
            for k in got:
                read = oracle.PARAMS[src][param][1]
                want |= {x for x in read(self.store, self.store.res[k]) if x in self.store.res}
        elif "_revinclude" in extra:
            src, param = extra["_revinclude"].split(":")
            self.count("_revinclude")
            read = (oracle.PROVENANCE_TARGET if src == "Provenance" else oracle.PARAMS[src][param])[1]
            for k, r in self.store.of_type(src).items():
                if set(read(self.store, r)) & got:
                    want.add(k)
        else:
            return
        have = set(entries(pages, "include"))
        want -= got
        if have - got != want:
            self.bad(qs, "included", missing=sorted(want - have), unexpected=sorted(have - want - got))

    def refusals(self):
        p0 = sorted(k for k in self.store.of_type("Patient") if self.store.phase[k] == 1)[0]
        for path, code in [("Patient?gender=male", "too-costly"),
                           ("Patient?_lastUpdated=gt2000-01-01", "too-costly"),
                           ("Observation?code=8867-4", "too-costly"),
                           ("Observation?status=final&date=ge2020", "too-costly"),
                           ("Patient?name=hol&no-such-param=1", None),
                           (f"Observation?patient={p0}&birthdate=1980", None)]:
            self.count("refusal")
            status, body = self.api.call("GET", path)
            ok = status == 400 and isinstance(body, dict) and \
                body.get("resourceType") == "OperationOutcome" and \
                (code is None or too_costly(status, body))
            if not ok:
                self.bad(path, f"expected 400 {code or 'OperationOutcome'}", status=status,
                         outcome=diag(body))


def check(api, root, split):
    store = store_of(root)
    c = Checker(api, store, split)
    for i, query in enumerate(all_queries(store, split)):
        c.run(query)
        if i % 40 == 7 and not query["extra"]:
            c.run(query, post=True)
    c.refusals()
    c.report["covered"] = {t: sorted(p) for t, p in c.report["covered"].items()}
    return c.report


def expect(root, rtype, qs):
    store = store_of(root)
    crit = []
    for k, v in urllib.parse.parse_qsl(qs):
        p, _, m = k.partition(":")
        crit.append((p, m or None, v))
    must, may = oracle.search(store, rtype, crit, {"now": 0, "split": 0})
    return {"must": sorted(must), "may": sorted(may)}


def main(argv):
    cmd = argv[1]
    if cmd == "expect":
        print(json.dumps(expect(argv[2], argv[3], argv[4])))
        return
    base, ca, token_file, root = argv[2:6]
    with open(token_file, encoding="utf-8") as f:
        api = Api(base, ca, f.read().strip())
    if cmd == "load":
        print(json.dumps({"split": load(api, root)}))
    elif cmd == "check":
        print(json.dumps(check(api, root, argv[6]), ensure_ascii=False))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
