"""A Zipkin v2 collector endpoint for tests: POST /api/v2/spans takes a JSON array of spans,
each checked against the Zipkin v2 API's span schema (zipkin2-api.yaml: ids in hex of the
stated lengths, kind from the enum, integer microsecond timestamp/duration, string tags);
a batch with an invalid span is answered 400, as Zipkin's server does. GET /spans returns every
accepted span. Prints the bound port on stdout."""
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SPANS = []
LOCK = threading.Lock()
HEX16 = re.compile(r"^[0-9a-f]{16}$")
TRACE = re.compile(r"^[0-9a-f]{16}([0-9a-f]{16})?$")
KINDS = {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}


def problem(s):
    if not isinstance(s, dict):
        return "span is not an object"
    if not TRACE.match(str(s.get("traceId", ""))):
        return "traceId must be 16 or 32 lower-hex"
    if not HEX16.match(str(s.get("id", ""))):
        return "id must be 16 lower-hex"
    if "parentId" in s and not HEX16.match(str(s["parentId"])):
        return "parentId must be 16 lower-hex"
    if "kind" in s and s["kind"] not in KINDS:
        return "unknown kind"
    for f in ("timestamp", "duration"):
        if f in s and (not isinstance(s[f], int) or s[f] < 0):
            return f + " must be a non-negative integer (microseconds)"
    if not isinstance(s.get("tags", {}), dict) or not all(isinstance(v, str) for v in s.get("tags", {}).values()):
        return "tags must map strings to strings"
    ep = s.get("localEndpoint", {})
    if not isinstance(ep, dict) or not isinstance(ep.get("serviceName", ""), str):
        return "localEndpoint.serviceName must be a string"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_POST(self):
        body = self.body()
        if self.path != "/api/v2/spans":
            return self.reply(404)
        try:
            spans = json.loads(body)
        except ValueError:
            return self.reply(400, b"not JSON")
        if not isinstance(spans, list):
            return self.reply(400, b"not a list")
        for s in spans:
            p = problem(s)
            if p:
                sys.stderr.write("rejected span: %s: %r\n" % (p, s))
                return self.reply(400, p.encode())
        with LOCK:
            SPANS.extend(spans)
        self.reply(202)

    def do_GET(self):
        with LOCK:
            body = json.dumps(SPANS).encode()
        self.reply(200, body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
