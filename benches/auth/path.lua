-- wrk script for benches/auth/run.sh: GET /path?id=N, N uniform over 1..PATHS (a fresh N per
-- request), with the Authorization header from $AUTH ("Bearer <jwt>" or "Basic <b64>").
-- At the end prints one machine-readable WRK_RESULT line (latencies in microseconds).
local auth = os.getenv("AUTH") or error("AUTH is not set")
local paths = tonumber(os.getenv("PATHS") or "501")
local headers = { ["Authorization"] = auth }
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end

function request()
  return wrk.format("GET", "/path?id=" .. math.random(1, paths), headers)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d sockerr=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
