-- wrk script: send the session cookie; with BENCH_AGENCIES > 0, spread requests over that many agencies
-- (BENCH_PATH's {slug} becomes bench-000 ... at random, as users of many agencies would); print one JSON
-- line with the figures we keep.
local cookie = os.getenv("BENCH_COOKIE") or ""
local path = os.getenv("BENCH_PATH") or "/"
local agencies = tonumber(os.getenv("BENCH_AGENCIES") or "0")
wrk.headers["Cookie"] = cookie

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

request = function()
  local slug = "bench-000"
  if agencies > 0 then
    slug = string.format("bench-%03d", math.random(0, agencies - 1))
  end
  return wrk.format("GET", (path:gsub("{slug}", slug)))
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, "errors": %d, "non2xx": %d}\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.errors.status))
end
