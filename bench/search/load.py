#!/usr/bin/env python3
"""Loads gen.py's data into a running phivault over HTTPS: transaction Bundles of whole
patients (a Patient and its Observations, urn:uuid references), on a few keep-alive
connections with a client-credentials token (renewed before its 15 minutes run out).

    load.py URL CAFILE CLIENT_JSON DATADIR IDS_OUT

CLIENT_JSON is what `phivault client add --json` printed (client_id, client_secret).

BENCH_BUNDLE_PATIENTS (default 12, about 250 entries a Bundle), BENCH_LOAD_CONNECTIONS
(default 2). Writes IDS_OUT: line i = '<Patient id>\\t<its first Observation id>' as the
server assigned them. Prints the load rate. Stdlib only.
"""
import base64
import http.client
import itertools
import json
import os
import queue
import ssl
import sys
import threading
import time
from urllib.parse import urlparse


class Client:
    """A keep-alive HTTPS connection with a bearer token shared by all threads."""
    lock = threading.Lock()
    token, token_at = None, 0.0

    def __init__(self, url, cafile, cid, secret):
        self.url = urlparse(url)
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
        self.conn = None

    def request(self, method, path, body=None, headers=None, retry=True):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.url.hostname, self.url.port,
                                                    context=self.ctx, timeout=600)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = None
            if not retry:
                raise
            return self.request(method, path, body, headers, retry=False)

    def bearer(self):
        with Client.lock:
            if Client.token is None or time.time() - Client.token_at > 600:
                status, body = self.request(
                    "POST", "/oauth/token", "grant_type=client_credentials",
                    {"authorization": f"Basic {self.basic}",
                     "content-type": "application/x-www-form-urlencoded"})
                if status != 200:
                    raise SystemExit(f"token: HTTP {status}")
                Client.token, Client.token_at = json.loads(body)["access_token"], time.time()
            return Client.token

    def fhir(self, method, path, body=None):
        headers = {"authorization": f"Bearer {self.bearer()}", "x-purpose-of-use": "TREAT",
                   "content-type": "application/fhir+json", "accept": "application/fhir+json"}
        return self.request(method, path, body, headers)


def uuid(kind, n):
    return f"urn:uuid:{kind:08x}-0000-4000-8000-{n:012x}"


def bundles(datadir, per_bundle):
    """(first patient index, Bundle JSON, [observation count per patient]) in patient order."""
    with open(f"{datadir}/patients.ndjson") as pf, open(f"{datadir}/observations.ndjson") as of:
        obs_lines = iter(of)
        pending = None
        for first in itertools.count(0, per_bundle):
            entries, counts = [], []
            for line in itertools.islice(pf, per_bundle):
                p = json.loads(line)
                i = int(p.pop("id")[1:])
                entries.append({"fullUrl": uuid(1, i), "resource": p,
                                "request": {"method": "POST", "url": "Patient"}})
                n = 0
                for o in itertools.chain([pending] if pending else [], obs_lines):
                    o = json.loads(o) if isinstance(o, str) else o
                    if o["subject"]["reference"] != f"Patient/p{i}":
                        pending = o
                        break
                    pending = None
                    del o["id"]
                    o["subject"]["reference"] = uuid(1, i)
                    entries.append({"fullUrl": uuid(2, len(entries)), "resource": o,
                                    "request": {"method": "POST", "url": "Observation"}})
                    n += 1
                counts.append(n)
            if not entries:
                return
            yield first, json.dumps({"resourceType": "Bundle", "type": "transaction",
                                     "entry": entries}, separators=(",", ":")), counts


def ids_of(answer, counts):
    """[(patient id, first observation id)] from a transaction-response, entries in order."""
    locs = [e["response"]["location"].split("/")[1] for e in answer["entry"]]
    out, k = [], 0
    for n in counts:
        out.append((locs[k], locs[k + 1] if n else ""))
        k += 1 + n
    return out


def worker(client, work, results, errors):
    while (item := work.get()) is not None:
        first, body, counts = item
        status, answer = client.fhir("POST", "/fhir", body)
        if status != 200:
            errors.append(f"bundle at patient {first}: HTTP {status} {answer[:300]!r}")
            return
        results[first] = ids_of(json.loads(answer), counts)


def main():
    url, cafile, creds, datadir, ids_out = sys.argv[1:6]
    with open(creds) as f:
        creds = json.load(f)
    cid, secret = creds["client_id"], creds["client_secret"]
    per_bundle = int(os.environ.get("BENCH_BUNDLE_PATIENTS", "12"))
    conns = int(os.environ.get("BENCH_LOAD_CONNECTIONS", "2"))
    work, results, errors = queue.Queue(maxsize=2 * conns), {}, []
    threads = [threading.Thread(target=worker, args=(Client(url, cafile, cid, secret), work,
                                                     results, errors)) for _ in range(conns)]
    for t in threads:
        t.start()
    start, resources, last = time.time(), 0, time.time()
    for first, body, counts in bundles(datadir, per_bundle):
        if errors:
            break
        work.put((first, body, counts))
        resources += len(counts) + sum(counts)
        if time.time() - last > 30:
            last = time.time()
            print(f"  loaded ~{resources} resources, {resources / (last - start):.0f}/s",
                  file=sys.stderr, flush=True)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    if errors:
        sys.exit("\n".join(errors))
    secs = time.time() - start
    with open(ids_out, "w") as f:
        for first in sorted(results):
            f.writelines(f"{p}\t{o}\n" for p, o in results[first])
    print(f"loaded {len(results) and sum(len(v) for v in results.values())} patients, "
          f"{resources} resources in {secs:.1f} s: {resources / secs:.0f} resources/s "
          f"({conns} connections, {per_bundle} patients a Bundle)")


if __name__ == "__main__":
    main()
