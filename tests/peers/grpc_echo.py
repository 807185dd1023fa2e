#!/usr/bin/env python3
"""Independent gRPC peer (server and client) for Isthmus integration tests.

Uses stock grpcio with no generated code: messages are raw bytes (identity
serializers), so the tests exercise a real gRPC stack, not our own h2 code.

Service `isthmus.test.Echo`:
  Unary  (unary-unary):   returns b"echo:" + request; request b"fail" aborts with
                          INVALID_ARGUMENT "asked to fail". Trailer
                          x-test-trailer: bye is set on every call.
  Bidi   (stream-stream): yields b"echo:" + msg per message; after the request
                          stream ends, trailer x-test-trailer: bidi-done.

Usage:
  grpc_echo.py server --port 0
      Listens on 127.0.0.1 (plaintext h2c), prints exactly one line
      `LISTENING <port>` once the server has started, serves until
      SIGTERM/SIGINT.
  grpc_echo.py client --target 127.0.0.1:PORT --case unary|fail|bidi [--count N]
      Prints one JSON line, e.g.
        {"ok": true, "code": "OK", "responses": ["echo:hello"], "trailers": {"x-test-trailer": "bye"}}
        {"ok": false, "code": "INVALID_ARGUMENT", "details": "asked to fail", "trailers": {...}}
      A failed bidi call also carries the "responses" received before the error.
      Every call has a 10 s deadline. Exit 0 when the call ran on an established
      connection, whatever its status (that is data); exit 2 on client-side
      errors (connection never established, other exceptions), still printing
      the JSON with "code" set to the grpc status name.
"""

import argparse
import base64
import json
import signal
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "isthmus.test.Echo"
UNARY_PATH = f"/{SERVICE}/Unary"
BIDI_PATH = f"/{SERVICE}/Bidi"
DEADLINE_SECS = 10.0
TRAILER = "x-test-trailer"

# SO_REUSEPORT is on by default in grpc; it would let a bind to a busy port
# silently "succeed". Proxy env vars must never route loopback test traffic.
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]


# --- server --------------------------------------------------------------------


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    # Set before a possible abort: grpc keeps trailing metadata on abort.
    context.set_trailing_metadata(((TRAILER, "bye"),))
    if request == b"fail":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "asked to fail")
    return b"echo:" + request


def _bidi(request_iterator, context: grpc.ServicerContext):
    for msg in request_iterator:
        yield b"echo:" + msg
    context.set_trailing_metadata(((TRAILER, "bidi-done"),))


def run_server(port: int) -> int:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            # None (de)serializers = identity: handlers see and return bytes.
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    try:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    except RuntimeError as e:  # newer grpcio raises on bind failure
        print(f"grpc_echo: cannot bind 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1
    if bound == 0:  # older grpcio returns 0 instead
        print(f"grpc_echo: cannot bind 127.0.0.1:{port}", file=sys.stderr)
        return 1
    server.start()

    stopping = threading.Event()

    def _stop(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            server.stop(grace=1.0)  # let in-flight calls finish briefly

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    # Readiness signal for the test harness: only after start() succeeded.
    print(f"LISTENING {bound}", flush=True)
    server.wait_for_termination()
    return 0


# --- client --------------------------------------------------------------------


def _metadata_dict(md) -> dict:
    out: dict = {}
    for key, value in md or ():
        if isinstance(value, bytes):  # "-bin" keys
            value = base64.b64encode(value).decode("ascii")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def _connection_failed(err: grpc.RpcError, connected: threading.Event) -> bool:
    """True when the call never reached a peer (a client-side error, exit 2).

    Note: grpcio labels every error "received from peer", so that text is useless.
    Without wait_for_ready, a call on a channel that cannot connect (refused,
    closed, not HTTP/2) fails with "failed to connect to all addresses". A
    deadline that fires before the channel ever got READY is also a connection
    failure. Anything else (incl. RST/GOAWAY or a deadline after connecting) is
    a status observed on a live connection: data, exit 0.
    """
    details = err.details() or ""
    if details.startswith("failed to connect to all addresses"):
        return True
    return err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not connected.is_set()


def run_client(target: str, case: str, count: int, message: str) -> int:
    result: dict = {"ok": False, "code": "UNKNOWN"}
    responses: list = []
    connected = threading.Event()
    exit_code = 0

    def _on_state(state):
        if state == grpc.ChannelConnectivity.READY:
            connected.set()

    channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    channel.subscribe(_on_state)
    try:
        if case in ("unary", "fail"):
            request = b"fail" if case == "fail" else message.encode()
            # No (de)serializers: raw bytes in and out.
            call_fn = channel.unary_unary(UNARY_PATH, request_serializer=None, response_deserializer=None)
            resp, call = call_fn.with_call(request, timeout=DEADLINE_SECS)
            responses.append(_text(resp))
            result = {
                "ok": True,
                "code": call.code().name,
                "responses": responses,
                "trailers": _metadata_dict(call.trailing_metadata()),
            }
        else:

            def _requests():
                for i in range(count):
                    yield f"m{i}".encode()

            call_fn = channel.stream_stream(BIDI_PATH, request_serializer=None, response_deserializer=None)
            call = call_fn(_requests(), timeout=DEADLINE_SECS)
            for resp in call:
                responses.append(_text(resp))
            result = {
                "ok": call.code() == grpc.StatusCode.OK,
                "code": call.code().name,
                "responses": responses,
                "trailers": _metadata_dict(call.trailing_metadata()),
            }
    except grpc.RpcError as err:
        result = {
            "ok": False,
            "code": err.code().name,
            "details": err.details() or "",
        }
        if case == "bidi":
            result["responses"] = responses
        result["trailers"] = _metadata_dict(err.trailing_metadata())
        if _connection_failed(err, connected):
            exit_code = 2
    except Exception as err:  # noqa: BLE001 - report any client-side failure as JSON
        result = {"ok": False, "code": "UNKNOWN", "details": f"client error: {err!r}", "trailers": {}}
        exit_code = 2
    finally:
        channel.unsubscribe(_on_state)
        channel.close()

    print(json.dumps(result), flush=True)
    return exit_code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p_server = sub.add_parser("server", help="run the Echo server on 127.0.0.1")
    p_server.add_argument("--port", type=int, default=0, help="0 = pick a free port")

    p_client = sub.add_parser("client", help="make one call and print a JSON line")
    p_client.add_argument("--target", required=True, help="host:port, e.g. 127.0.0.1:8080")
    p_client.add_argument("--case", required=True, choices=["unary", "fail", "bidi"])
    p_client.add_argument("--count", type=int, default=100, help="bidi: messages to send")
    p_client.add_argument("--message", default="hello", help="unary: request payload")

    args = parser.parse_args()
    if args.cmd == "server":
        return run_server(args.port)
    return run_client(args.target, args.case, args.count, args.message)


if __name__ == "__main__":
    sys.exit(main())
