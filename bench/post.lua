-- wrk script: POST one valid JSON submission per request and count what the server acknowledged.
-- With BENCH_ID_DIR set, each thread writes the ids of acknowledged submissions to a file there,
-- so the runner can check every acknowledged submission against the database.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
-- A distinct address per request, as real traffic is: the duplicate rule runs and finds nothing. BENCH_RUN
-- names the wrk run, so the measured run does not repeat the warm-up's addresses within the rule's 10 minutes.
local template = '{"name": "Anna Rossi", "email": "anna+%s-%d-%d@example.com", "phone": "+39 055 123 4567", ' ..
                 '"subject": "Rose per sabato", "message": "Vorrei un mazzo di rose rosse per sabato mattina. ' ..
                 'Можно ли доставить к десяти часам? Grazie mille!"}'
local sent = 0

function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, string.format(template, run, index or 0, sent))
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  acknowledged = 0
  refused = 0
  run = os.getenv("BENCH_RUN") or "run"
  local dir = os.getenv("BENCH_ID_DIR")
  if dir and dir ~= "" then
    ids = io.open(dir .. "/ids-" .. index .. ".txt", "w")
    ids:setvbuf("line")
  end
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    acknowledged = acknowledged + 1
    if ids then
      local id = string.match(body, '"id":%s*(%d+)')
      if id then ids:write(id, "\n") end
    end
  else
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("acknowledged")
    bad = bad + thread:get("refused")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "acknowledged": %d, "refused": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, ok, bad, errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
