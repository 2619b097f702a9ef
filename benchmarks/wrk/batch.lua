-- POST /v1/batch with WRITES incr writes per request over 100,000 keys.
local counter = 0
local WRITES = 100

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local items = {}
  for i = 1, WRITES do
    items[i] = string.format('{"op":"incr","key":"k%d","value":1}', math.random(1, 100000))
  end
  return wrk.format(nil, "/v1/batch", nil, '{"writes":[' .. table.concat(items, ",") .. ']}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"mean_us":%.1f,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99), latency.max))
end
