-- wrk script for benches/load.sh. MODE (environment) picks the workload:
--   hello        POST a small form body to /
--   subscribe    POST /subscribe with a unique address per request
--   confirm      POST /confirm with the next token from TOKENS (a file, one per line)
--   unsubscribe  POST a one-click unsubscribe to the next URL path from TOKENS
local mode = os.getenv("MODE") or "hello"
local run = os.getenv("RUN") or "0"
local tokens = {}
local next_id = 0

-- load.sh runs wrk with one thread (-t1): 64 connections on one core leave
-- the other core to the server, and one thread needs no token partitioning.
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  n = 0
  if mode == "confirm" or mode == "unsubscribe" then
    for line in io.lines(os.getenv("TOKENS")) do
      table.insert(tokens, line)
    end
  end
end

-- RATE (environment): the offered rate over all ALL_CONNECTIONS connections
-- of every wrk process; each connection waits its share between requests
-- (closed loop, so the rate offered is a little lower than RATE).
local rate = tonumber(os.getenv("RATE") or "")
if rate and rate > 0 then
  local per_connection_ms = tonumber(os.getenv("ALL_CONNECTIONS") or "64") * 1000 / rate
  function delay()
    return per_connection_ms
  end
end

local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }

function request()
  n = n + 1
  if mode == "subscribe" then
    return wrk.format("POST", "/subscribe", form, "email=r" .. run .. "t" .. id .. "n" .. n .. "%40example.org")
  elseif mode == "confirm" or mode == "unsubscribe" then
    -- Every request acts on a fresh subscription; when they run out, stop
    -- (repeats would be cheap no-ops and flatter the figure).
    if n > #tokens then
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
    end
    if mode == "confirm" then
      return wrk.format("POST", "/confirm", form, "token=" .. tokens[n])
    end
    return wrk.format("POST", tokens[n], form, "List-Unsubscribe=One-Click")
  else
    return wrk.format("POST", "/", form, "email=hello%40example.org")
  end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests))
end
