-- The one wrk script of `cargo xtask bench` (xtask/src/bench.rs writes its inputs and reads
-- its last line). Every request is built in init, so the per-request cost in wrk is a table
-- index, the same for every endpoint and for /healthz.
--
-- Environment:
--   WXBENCH_METHOD, WXBENCH_PATH  the request line
--   WXBENCH_TYPE                  Content-Type of the body ("" for none)
--   WXBENCH_FILE                  lines "token<TAB>body" (token "" for none, body "" for none);
--                                 unset: one request with neither
--   WXBENCH_ONCE                  "1": each line is sent once (single-use codes), threads take
--                                 disjoint slices, and a thread that runs out stops and says so;
--                                 otherwise every thread cycles over the whole file
--   WXBENCH_THREADS               wrk's -t

local threads = {}

function setup(thread)
   thread:set("index", #threads)
   table.insert(threads, thread)
end

local requests = {}
local count = 0
local next_one = 0
local once = false
exhausted = 0

function init(args)
   local method = os.getenv("WXBENCH_METHOD")
   local path = os.getenv("WXBENCH_PATH")
   local content_type = os.getenv("WXBENCH_TYPE") or ""
   local file = os.getenv("WXBENCH_FILE")
   local nthreads = tonumber(os.getenv("WXBENCH_THREADS"))
   once = os.getenv("WXBENCH_ONCE") == "1"
   local function build(token, body)
      local headers = {}
      if content_type ~= "" then headers["Content-Type"] = content_type end
      if token ~= "" then headers["Authorization"] = "Bearer " .. token end
      if body == "" then body = nil end
      return wrk.format(method, path, headers, body)
   end
   if file == nil or file == "" then
      requests[1] = build("", "")
   else
      local line_no = 0
      for line in io.lines(file) do
         if not once or line_no % nthreads == index then
            local token, body = line:match("^([^\t]*)\t(.*)$")
            if token == nil then error(file .. ": line " .. line_no .. " has no tab") end
            requests[#requests + 1] = build(token, body)
         end
         line_no = line_no + 1
      end
   end
   count = #requests
   if count == 0 then error("no requests for thread " .. index) end
end

function request()
   next_one = next_one + 1
   if next_one > count then
      if once then
         -- Out of single-use codes: stop this thread and tell done(); xtask throws the run
         -- away. The request sent meanwhile repeats a code (an error, in a discarded run).
         exhausted = exhausted + 1
         wrk.thread:stop()
         return requests[count]
      end
      next_one = 1
   end
   return requests[next_one]
end

function done(summary, latency, _)
   local out_of_codes = 0
   for _, thread in ipairs(threads) do
      out_of_codes = out_of_codes + (thread:get("exhausted") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'WXBENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
      '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"exhausted":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.status, e.timeout, out_of_codes))
end
