-- wrk script: GET /auth (Basic credentials -> JWT) against the users service. Every request
-- verifies an Argon2id hash (m=19 MiB, t=2, p=1), so this measures the password cost on purpose.
-- Env: BASIC (base64 of "login:password").
local basic = os.getenv("BASIC") or error("BASIC is not set")
local headers = { ["Authorization"] = "Basic " .. basic }

function request()
  return wrk.format("GET", "/auth", headers)
end
