-- wrk: POST the probe photo to identify, multipart, with the API key.
-- wrk -s identify.lua URL -- KEY PHOTO
local boundary = "cnn-wrk-boundary"
function init(args)
  local key, photo = args[1], args[2]
  local f = assert(io.open(photo, "rb"))
  local bytes = f:read("*all")
  f:close()
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"probe.png\"\r\n"
    .. "Content-Type: image/png\r\n\r\n" .. bytes .. "\r\n--" .. boundary .. "--\r\n"
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f per_second=%.2f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f non_2xx=%d socket_errors=%d\n",
    summary.requests, s, summary.requests / s, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
