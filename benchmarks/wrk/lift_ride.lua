-- POST one lift ride per request, random resort/day/skier/lift (Ski Data API route).
-- done() prints one JSON line with the figures benchmarks/ingest.py reads.
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local path = string.format("/skiers/%d/seasons/2025/days/%d/skiers/%d",
    math.random(1, 10), math.random(1, 3), math.random(1, 100000))
  local body = string.format('{"time":%d,"liftID":%d}', math.random(1, 360), math.random(1, 40))
  return wrk.format(nil, path, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"mean_us":%.1f,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99), latency.max))
end
