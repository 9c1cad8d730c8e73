-- wrk script for benches/cache/run.sh (RSS phase): GET /path?id=1..COUNT, each id once, in
-- order, over all connections of ONE thread (run with -t1); the thread stops after COUNT
-- responses. Prints WRK_FILL with the count of non-200 answers.
local count = tonumber(os.getenv("COUNT") or "100000")
local next_id = 0
local responses = 0
local bad = 0

function request()
  next_id = next_id + 1
  if next_id > count then next_id = count end -- a few repeats at the very end are harmless
  return wrk.format("GET", "/path?id=" .. next_id)
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 then bad = bad + 1 end
  if responses >= count then wrk.thread:stop() end
end

done = function(summary, latency, requests)
  io.write(string.format("WRK_FILL requests=%d non2xx=%d\n", summary.requests, summary.errors.status))
end
