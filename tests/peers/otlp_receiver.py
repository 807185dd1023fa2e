"""An OTLP trace receiver for tests, built from the published `opentelemetry-proto` package
(its generated TraceService stubs): a gRPC server accepting
opentelemetry.proto.collector.trace.v1.TraceService/Export, and an HTTP GET /spans returning
every received span as proto3 JSON with its resource's attributes. Prints the gRPC port and the
HTTP port on stdout.

`opentelemetry-proto` is installed apart (scripts/test-deps.sh, --target) because xds-protos
ships its own copies of some opentelemetry/proto modules without gRPC stubs; its directory goes
first on the package path here."""
import json
import os
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OTEL_DIR = os.path.join(os.path.dirname(sys.executable), "..", "otel-proto")
sys.path.insert(0, OTEL_DIR)
import opentelemetry  # noqa: E402

opentelemetry.__path__.insert(0, os.path.join(OTEL_DIR, "opentelemetry"))
import grpc  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc  # noqa: E402

SPANS = []
LOCK = threading.Lock()


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        with LOCK:
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        d = MessageToDict(s, preserving_proto_field_name=True)
                        d["resource"] = resource
                        d["scope"] = ss.scope.name
                        SPANS.append(d)
        return trace_service_pb2.ExportTraceServiceResponse()


class Spans(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        with LOCK:
            body = json.dumps(SPANS).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
grpc_port = server.add_insecure_port("127.0.0.1:0")
server.start()
http = ThreadingHTTPServer(("127.0.0.1", 0), Spans)
print(grpc_port, http.server_address[1], flush=True)
http.serve_forever()
