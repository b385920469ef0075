-- wrk script: POSTs one hook body with a fresh signed EHR token per request (each token's jti is
-- unique, so the service's replay check passes). Threads take interleaved tokens.
--   wrk -t2 -c16 -d10s -s bench/cds_load.lua URL -- TOKENS_FILE BODY_FILE
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local tokens, body, idx, step = {}, nil, 0, 2

function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  local f = assert(io.open(args[2], "r")); body = f:read("*a"); f:close()
  idx = id
end

function request()
  local t = tokens[(idx % #tokens) + 1]
  idx = idx + step
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t }, body)
end

function done(summary, latency, requests)
  io.write(string.format("requests=%d errors_status=%d p50_ms=%.2f p99_ms=%.2f rps=%.1f\n",
    summary.requests, summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
end
