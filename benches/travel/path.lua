-- wrk script: GET /path?id=N against the paths service, N uniform over 1..PATHS (the seed's
-- 501 paths), a fresh N for every request (the original's get.lua drew one N per thread).
-- Env: TOKEN (a Bearer token from GET /auth), PATHS (default 501).
local token = os.getenv("TOKEN") or error("TOKEN is not set")
local paths = tonumber(os.getenv("PATHS") or "501")
local headers = { ["Authorization"] = "Bearer " .. token }
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
