-- wrk script for the search benchmark (issue 22), the same for phivault and Medplum.
--
-- Requests come from files BENCH_REQUESTS/<kind>.tsv written by bench/search/queries.py for
-- one server (its own ids): a line is a path (GET) or a path, a tab and a JSON body (POST).
-- BENCH_MIX chooses kinds by weight. The default is the mixed workload: 70% reads (reads by
-- id and the three searches), 30% creates (Patient and Observation):
--   read-patient=20,read-obs=10,name=13,family=13,obs=14,create-patient=12,create-obs=18
-- A single kind (BENCH_MIX=name=1) drives one search with varying values. Each thread starts
-- at its own place in each file and walks it round-robin. At the end one line:
--   RESULT requests=N seconds=S rps=R p50=A p95=B p99=C non2xx=E socket=F   (latency in ms)
local mix_default =
  "read-patient=20,read-obs=10,name=13,family=13,obs=14,create-patient=12,create-obs=18"
local threads = {}
local thread_no = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("thread_no", thread_no)
  table.insert(threads, thread)
end

local kinds, total, post_headers = {}, 0, nil

local function load_kind(dir, name, weight)
  local lines = {}
  for line in io.lines(dir .. "/" .. name .. ".tsv") do
    local path, body = line:match("^([^\t]*)\t(.*)$")
    if path then
      lines[#lines + 1] = { path = path, body = body }
    else
      lines[#lines + 1] = { path = line }
    end
  end
  assert(#lines > 0, "no requests in " .. name .. ".tsv")
  total = total + weight
  kinds[#kinds + 1] = { name = name, lines = lines, weight = total, next = 1 }
end

function init(args)
  local dir = assert(os.getenv("BENCH_REQUESTS"), "BENCH_REQUESTS is not set")
  local mix = os.getenv("BENCH_MIX") or mix_default
  for name, weight in mix:gmatch("([%w-]+)=(%d+)") do
    load_kind(dir, name, tonumber(weight))
  end
  math.randomseed(7919 * (thread_no or 1))
  for _, kind in ipairs(kinds) do
    kind.next = 1 + math.floor(#kind.lines * ((thread_no or 1) - 1) / 4) % #kind.lines
  end
end

function request()
  local roll = math.random() * total
  local kind = kinds[#kinds]
  for _, k in ipairs(kinds) do
    if roll < k.weight then
      kind = k
      break
    end
  end
  local line = kind.lines[kind.next]
  kind.next = kind.next % #kind.lines + 1
  if line.body then
    if not post_headers then -- wrk.format replaces wrk.headers (the -H ones) when given any
      post_headers = { ["content-type"] = "application/fhir+json" }
      for name, value in pairs(wrk.headers) do post_headers[name] = value end
    end
    return wrk.format("POST", line.path, post_headers, line.body)
  end
  return wrk.format("GET", line.path)
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local ms = function(p) return string.format("%.2f", latency:percentile(p) / 1000) end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.1f p50=%s p95=%s p99=%s non2xx=%d socket=%d\n",
    summary.requests, s, summary.requests / s, ms(50), ms(95), ms(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
