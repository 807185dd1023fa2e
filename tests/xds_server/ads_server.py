#!/usr/bin/env python3
"""Independent xDS (Envoy v3 ADS) control plane for Isthmus integration tests.

A `grpc.aio` server implementing
`envoy.service.discovery.v3.AggregatedDiscoveryService` (both the
state-of-the-world `StreamAggregatedResources` and the incremental
`DeltaAggregatedResources`) with the generated stubs from the PyPI package
`xds-protos`, so the tests talk to a control plane that shares no code with
Isthmus.

The test drives it through line-oriented JSON: commands on stdin, events on
stdout (one object per line, flushed after each line). See README.md beside
this file for the full protocol; in short:

  stdin  {"cmd":"set","type":T,"version":V,"resources":[{"@type":...},...]}
         {"cmd":"push","type":T|"all","nonce":N?}
         {"cmd":"remove","type":T,"names":[...]}
         {"cmd":"garbage","type":T}
         {"cmd":"drop_stream"}
         {"cmd":"stop"}
  stdout {"event":"listening","port":P}, stream_open, request, pushed,
         stream_closed, dropped, ok, error

Usage:
  ads_server.py [--port 0] [--unix PATH]

Exits 0 on the `stop` command, on stdin EOF, and on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import json
import os
import signal
import stat
import sys
import threading

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory

# The ADS service and its messages.
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

# Every message type a test may put into a snapshot (or nest in a typed
# config) must be in the default descriptor pool, or ParseDict cannot resolve
# the "@type" of an Any. Importing the generated module registers it.
from envoy.config.listener.v3 import listener_pb2  # noqa: F401  Listener
from envoy.config.route.v3 import route_pb2  # noqa: F401  RouteConfiguration
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401  Cluster
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401  ClusterLoadAssignment
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # noqa: F401  Secret
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401  Up/DownstreamTlsContext
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,  # HttpConnectionManager
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401  TcpProxy
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401  Router
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
# Types an istiod-shaped push carries (Istio's TypedStruct filters, inspectors, no-op filters).
from xds.type.v3 import typed_struct_pb2 as _xds_typed_struct  # noqa: F401,E402
from udpa.type.v1 import typed_struct_pb2 as _udpa_typed_struct  # noqa: F401,E402
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as _grpc_stats  # noqa: F401,E402
from envoy.extensions.filters.http.fault.v3 import fault_pb2 as _fault  # noqa: F401,E402
from envoy.extensions.filters.http.cors.v3 import cors_pb2 as _cors  # noqa: F401,E402
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as _http_rbac  # noqa: F401,E402
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as _net_rbac  # noqa: F401,E402
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as _http_rl  # noqa: F401,E402
from envoy.extensions.filters.network.local_ratelimit.v3 import local_rate_limit_pb2 as _net_rl  # noqa: F401,E402
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2 as _odst  # noqa: F401,E402
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2 as _tlsi  # noqa: F401,E402
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2 as _httpi  # noqa: F401,E402
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2 as _prev  # noqa: F401,E402

TYPE_PREFIX = "type.googleapis.com/"
LISTENER_TYPE = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
CLUSTER_TYPE = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
# Types where an empty subscription means "everything" (legacy wildcard).
# Any type may be subscribed with the explicit wildcard name "*".
WILDCARD_TYPES = frozenset({LISTENER_TYPE, CLUSTER_TYPE})
WILDCARD = "*"

# Payload of the undecodable resource sent by the `garbage` command.
GARBAGE_BYTES = b"\xff\xff\xff\xff garbage"

# Upper bounds for command handling that waits on streams (never sleeps).
WRITE_WAIT_SECS = 10.0
CLOSE_WAIT_SECS = 10.0

# SO_REUSEPORT is on by default in grpc; it would let a bind to a busy port
# silently "succeed".
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]


# --- output ----------------------------------------------------------------------


def emit(obj: dict) -> None:
    """Print one JSON event line and flush. Called only on the event loop thread."""
    try:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # The test stopped reading (or closed our stdout): nothing to report to.
        pass


# --- snapshot state ------------------------------------------------------------------


def resource_name(res: any_pb2.Any) -> str:
    """Name of a resource: `.name`, or `.cluster_name` (ClusterLoadAssignment)."""
    full_name = res.type_url.rsplit("/", 1)[-1]
    desc = descriptor_pool.Default().FindMessageTypeByName(full_name)
    msg = message_factory.GetMessageClass(desc)()
    if not res.Unpack(msg):
        raise ValueError(f"cannot unpack resource of type {res.type_url}")
    for field in ("name", "cluster_name"):
        if field in desc.fields_by_name:
            return getattr(msg, field)
    raise ValueError(f"type {full_name} has neither 'name' nor 'cluster_name'")


class Snapshot:
    """Current resources of one type_url.

    `entries` is an ordered list of (name, Any). Normally names are unique
    (a later resource with the same name replaces the earlier one); a `set`
    with "raw_names": true keeps duplicates, to test duplicate-name NACKs.
    """

    def __init__(self, version: str, entries: list):
        self.version = version
        self.entries = entries
        # Names deleted by `remove` since the last push of this type; the next
        # push tells Delta streams about them in removed_resources.
        self.pending_removed: list = []

    def names(self) -> set:
        return {name for name, _ in self.entries}


def matches(name: str, subscribed: set, wildcard: bool) -> bool:
    return wildcard or name in subscribed


# --- streams ---------------------------------------------------------------------------

# Sentinels for a stream's outgoing queue.
END = object()  # finish the RPC with status OK (client half-closed)
ABORT = object()  # finish the RPC with status UNAVAILABLE (drop_stream)


class Outgoing:
    """One response queued for a stream, plus what to report once it is written."""

    def __init__(self, response, event: dict):
        self.response = response
        self.event = event  # the "pushed" event, printed just before the write
        # Resolves True once written, False if the stream closed first.
        self.written = asyncio.get_running_loop().create_future()


class Stream:
    """State of one open ADS stream (either mode)."""

    def __init__(self, sid: int, mode: str, context):
        self.id = sid
        self.mode = mode  # "sotw" or "delta"
        self.context = context
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = asyncio.Event()
        # type_url -> set of subscribed names; a type is "subscribed" once the
        # stream has sent any request for it.
        self.subs: dict = {}
        # type_url -> bool: subscribed to everything of that type.
        self.wildcard: dict = {}
        # type_url -> latest nonce we sent for that type (SotW ACK detection).
        self.latest_nonce: dict = {}
        # Delta only: type_url -> {name: version the client has}.
        self.has: dict = {}

    def is_subscribed(self, type_url: str) -> bool:
        return type_url in self.subs

    def send(self, response, event: dict) -> Outgoing:
        """Queue a response for the writer (it emits `event` just before writing)."""
        out = Outgoing(response, event)
        self.queue.put_nowait(out)
        return out


class ControlPlane(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self):
        self.snapshots: dict = {}  # type_url -> Snapshot
        self.streams: dict = {}  # stream id -> Stream
        self.next_stream_id = 0
        self.nonce_counter = 0
        self.stop_by_command = False  # `stop` (vs EOF/signal): print its "ok"

    def new_nonce(self, custom=None) -> str:
        if custom:
            return custom
        self.nonce_counter += 1
        return f"n{self.nonce_counter}"

    # --- response builders ---------------------------------------------------

    def sotw_response(self, stream: Stream, type_url: str, reason: str, nonce=None) -> Outgoing:
        """Queue the snapshot of `type_url`, filtered by the stream's subscription."""
        snap = self.snapshots[type_url]
        subscribed = stream.subs.get(type_url, set())
        wildcard = stream.wildcard.get(type_url, False)
        chosen = [(n, r) for n, r in snap.entries if matches(n, subscribed, wildcard)]
        nonce = self.new_nonce(nonce)
        stream.latest_nonce[type_url] = nonce
        resp = discovery_pb2.DiscoveryResponse(
            version_info=snap.version,
            resources=[r for _, r in chosen],
            type_url=type_url,
            nonce=nonce,
        )
        event = {"event": "pushed", "stream": stream.id, "type": type_url, "nonce": nonce,
                 "version": snap.version, "names": [n for n, _ in chosen], "reason": reason}
        return stream.send(resp, event)

    def delta_response(self, stream: Stream, type_url: str, reason: str, only_new: bool,
                       nonce=None, removed=()) -> Outgoing:
        """Queue a Delta response for `type_url`.

        only_new: send only resources the stream does not have at the snapshot
        version (automatic answers); otherwise every matching resource (push).
        removed: names to report in removed_resources (those the stream is
        subscribed to).
        """
        snap = self.snapshots[type_url]
        subscribed = stream.subs.get(type_url, set())
        wildcard = stream.wildcard.get(type_url, False)
        has = stream.has.setdefault(type_url, {})
        chosen = [(n, r) for n, r in snap.entries
                  if matches(n, subscribed, wildcard)
                  and not (only_new and has.get(n) == snap.version)]
        gone = [n for n in removed if matches(n, subscribed, wildcard)]
        for n, _ in chosen:
            has[n] = snap.version
        for n in gone:
            has.pop(n, None)
        nonce = self.new_nonce(nonce)
        stream.latest_nonce[type_url] = nonce
        resp = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=snap.version,
            resources=[discovery_pb2.Resource(name=n, version=snap.version, resource=r)
                       for n, r in chosen],
            type_url=type_url,
            removed_resources=gone,
            nonce=nonce,
        )
        event = {"event": "pushed", "stream": stream.id, "type": type_url, "nonce": nonce,
                 "version": snap.version, "names": [n for n, _ in chosen], "removed": gone,
                 "reason": reason}
        return stream.send(resp, event)

    # --- RPC plumbing shared by both modes --------------------------------------

    async def run_stream(self, mode: str, request_iterator, context, on_request):
        """Serve one stream: a reader task handles requests, this coroutine writes."""
        self.next_stream_id += 1
        stream = Stream(self.next_stream_id, mode, context)
        self.streams[stream.id] = stream
        emit({"event": "stream_open", "stream": stream.id, "mode": mode, "peer": context.peer()})

        async def reader():
            try:
                async for request in request_iterator:
                    try:
                        on_request(stream, request)
                    except Exception as e:  # a bug here must be visible, not silent
                        emit({"event": "error", "cmd": None, "stream": stream.id,
                              "message": f"request handling: {type(e).__name__}: {e}"})
            finally:
                # Client half-closed (or the read failed): let the writer finish.
                stream.queue.put_nowait(END)

        reader_task = asyncio.get_running_loop().create_task(reader())
        pending = None
        try:
            while True:
                item = await stream.queue.get()
                if item is END:
                    return
                if item is ABORT:
                    await context.abort(grpc.StatusCode.UNAVAILABLE,
                                        "stream dropped by the test control plane")
                pending = item
                # Printed before the write, so the event is out by the time the
                # client can possibly see the response.
                emit(item.event)
                await context.write(item.response)
                item.written.set_result(True)
                pending = None
        except asyncio.CancelledError:
            # The client went away or the server is stopping; the RPC is over
            # either way. Returning (instead of re-raising) keeps grpc from
            # printing a traceback for an expected event.
            return
        finally:
            reader_task.cancel()
            del self.streams[stream.id]
            # Anyone waiting for a write to this stream learns it never happened.
            if pending is not None and not pending.written.done():
                pending.written.set_result(False)
            while not stream.queue.empty():
                item = stream.queue.get_nowait()
                if isinstance(item, Outgoing) and not item.written.done():
                    item.written.set_result(False)
            emit({"event": "stream_closed", "stream": stream.id})
            stream.closed.set()

    @staticmethod
    def node_fields(node) -> dict:
        """node_id / locality / metadata_keys of a request's (optional) node."""
        locality = None
        if node.HasField("locality"):
            loc = node.locality
            locality = {"region": loc.region, "zone": loc.zone, "sub_zone": loc.sub_zone}
        return {"node_id": node.id, "locality": locality,
                "metadata_keys": sorted(node.metadata.fields.keys())}

    # --- SotW ------------------------------------------------------------------

    async def StreamAggregatedResources(self, request_iterator, context):
        await self.run_stream("sotw", request_iterator, context, self.on_sotw_request)

    def on_sotw_request(self, stream: Stream, req) -> None:
        type_url = req.type_url
        err = req.error_detail
        nack = bool(err.message) or err.code != 0
        emit({"event": "request", "stream": stream.id, "mode": "sotw", "type": type_url,
              "version": req.version_info, "nonce": req.response_nonce,
              "names": list(req.resource_names), "nack": nack, "error": err.message,
              **self.node_fields(req.node)})

        # The latest request's names replace the subscription (SotW semantics).
        names = set(req.resource_names)
        names_changed = stream.subs.get(type_url) != names
        stream.subs[type_url] = names
        stream.wildcard[type_url] = WILDCARD in names or (
            not names and type_url in WILDCARD_TYPES)

        latest = stream.latest_nonce.get(type_url)
        if req.response_nonce and latest is not None and req.response_nonce != latest:
            return  # stale nonce: the spec says such requests must be ignored
        if req.response_nonce and req.response_nonce == latest:
            # ACK/NACK of our latest response: no answer. Exception: an ACK that
            # also changes the subscribed names (how Envoy asks for a new RDS/EDS
            # name) is answered, as a real control plane would.
            if nack or not names_changed:
                return
        snap = self.snapshots.get(type_url)
        if snap is None:
            return  # nothing set for this type yet; a later push answers
        self.sotw_response(stream, type_url, "auto")

    # --- Delta -----------------------------------------------------------------

    async def DeltaAggregatedResources(self, request_iterator, context):
        await self.run_stream("delta", request_iterator, context, self.on_delta_request)

    def on_delta_request(self, stream: Stream, req) -> None:
        type_url = req.type_url
        err = req.error_detail
        nack = bool(err.message) or err.code != 0
        emit({"event": "request", "stream": stream.id, "mode": "delta", "type": type_url,
              "nonce": req.response_nonce,
              "subscribe": list(req.resource_names_subscribe),
              "unsubscribe": list(req.resource_names_unsubscribe),
              "initial_versions": dict(req.initial_resource_versions),
              "nack": nack, "error": err.message, **self.node_fields(req.node)})

        first = not stream.is_subscribed(type_url)
        subs = stream.subs.setdefault(type_url, set())
        has = stream.has.setdefault(type_url, {})
        if first:
            # The client already holds these (e.g. after a reconnect).
            has.update(req.initial_resource_versions)
            # Legacy wildcard: first request for LDS/CDS naming nothing.
            stream.wildcard[type_url] = (not req.resource_names_subscribe
                                         and type_url in WILDCARD_TYPES)
        for name in req.resource_names_subscribe:
            if name == WILDCARD:
                stream.wildcard[type_url] = True
            else:
                subs.add(name)
        for name in req.resource_names_unsubscribe:
            if name == WILDCARD:
                stream.wildcard[type_url] = False
            else:
                subs.discard(name)
                has.pop(name, None)  # re-subscribing later sends it again

        # ACK/NACKs and pure unsubscribes get no answer; a request that
        # subscribes something (or the first one for a type) does.
        if nack or not (first or req.resource_names_subscribe):
            return
        snap = self.snapshots.get(type_url)
        if snap is None:
            return
        wildcard = stream.wildcard.get(type_url, False)
        new = [n for n, _ in snap.entries
               if matches(n, subs, wildcard) and has.get(n) != snap.version]
        if new or first:
            self.delta_response(stream, type_url, "auto", only_new=True)

    # --- commands ----------------------------------------------------------------

    async def wait_written(self, outs: list) -> None:
        """Wait (bounded) until queued responses are written or their streams closed."""
        futures = [o.written for o in outs]
        if futures:
            await asyncio.wait(futures, timeout=WRITE_WAIT_SECS)

    def cmd_set(self, cmd: dict) -> None:
        type_url = require_str(cmd, "type")
        version = require_str(cmd, "version")
        resources = cmd.get("resources", [])
        if not isinstance(resources, list):
            raise ValueError("'resources' must be a list")
        parsed = []
        for i, res in enumerate(resources):
            if not isinstance(res, dict) or "@type" not in res:
                raise ValueError(f"resource {i} is not an object with '@type'")
            any_msg = json_format.ParseDict(res, any_pb2.Any())
            parsed.append((resource_name(any_msg), any_msg))
        if not cmd.get("raw_names", False):
            # Dedupe by name: the last resource with a name wins, first position kept.
            parsed = list(dict(parsed).items())
        old = self.snapshots.get(type_url)
        snap = Snapshot(version, parsed)
        if old is not None:
            snap.pending_removed = old.pending_removed
        self.snapshots[type_url] = snap

    async def cmd_push(self, cmd: dict) -> None:
        type_arg = require_str(cmd, "type")
        nonce = cmd.get("nonce") or None
        if type_arg == "all":
            types = list(self.snapshots)
        elif type_arg in self.snapshots:
            types = [type_arg]
        else:
            raise ValueError(f"no snapshot for type {type_arg}")
        outs = []
        for type_url in types:
            snap = self.snapshots[type_url]
            # Names removed since the last push, unless a later `set` re-added them.
            present = snap.names()
            removed = [n for n in snap.pending_removed if n not in present]
            for stream in list(self.streams.values()):
                if not stream.is_subscribed(type_url):
                    continue
                if stream.mode == "sotw":
                    outs.append(self.sotw_response(stream, type_url, "push", nonce))
                else:
                    outs.append(self.delta_response(stream, type_url, "push", only_new=False,
                                                    nonce=nonce, removed=removed))
            snap.pending_removed = []
        await self.wait_written(outs)

    def cmd_remove(self, cmd: dict) -> None:
        type_url = require_str(cmd, "type")
        names = cmd.get("names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'names' must be a list of strings")
        snap = self.snapshots.get(type_url)
        if snap is None:
            raise ValueError(f"no snapshot for type {type_url}")
        gone = set(names)
        snap.entries = [(n, r) for n, r in snap.entries if n not in gone]
        snap.pending_removed += [n for n in names if n not in snap.pending_removed]

    async def cmd_garbage(self, cmd: dict) -> None:
        type_url = require_str(cmd, "type")
        snap = self.snapshots.get(type_url)
        version = cmd.get("version") or (snap.version if snap else "garbage")
        junk = any_pb2.Any(type_url=type_url, value=GARBAGE_BYTES)
        outs = []
        for stream in list(self.streams.values()):
            if stream.mode != "sotw":
                continue
            nonce = self.new_nonce(cmd.get("nonce") or None)
            stream.latest_nonce[type_url] = nonce
            resp = discovery_pb2.DiscoveryResponse(
                version_info=version, resources=[junk], type_url=type_url, nonce=nonce)
            event = {"event": "pushed", "stream": stream.id, "type": type_url, "nonce": nonce,
                     "version": version, "names": [], "reason": "garbage"}
            outs.append(stream.send(resp, event))
        await self.wait_written(outs)

    async def abort_streams(self, victims: list) -> None:
        """End `victims` with UNAVAILABLE; wait (bounded) for their stream_closed."""
        for stream in victims:
            stream.queue.put_nowait(ABORT)
        waits = [asyncio.ensure_future(s.closed.wait()) for s in victims]
        if waits:
            _, not_done = await asyncio.wait(waits, timeout=CLOSE_WAIT_SECS)
            for w in not_done:
                w.cancel()

    async def cmd_drop_stream(self, cmd: dict) -> None:
        only = cmd.get("stream")  # optional: drop just this stream id
        victims = [s for s in self.streams.values() if only is None or s.id == only]
        await self.abort_streams(victims)
        emit({"event": "dropped", "count": len(victims)})


class SecretService(sds_pb2_grpc.SecretDiscoveryServiceServicer):
    """istio-agent's SDS socket shape: the same streams, served as `StreamSecrets` /
    `DeltaSecrets` (same messages as ADS; events and commands are unchanged)."""

    def __init__(self, cp: "ControlPlane"):
        self.cp = cp

    async def StreamSecrets(self, request_iterator, context):
        emit({"event": "sds_call", "method": "StreamSecrets"})
        await self.cp.StreamAggregatedResources(request_iterator, context)

    async def DeltaSecrets(self, request_iterator, context):
        emit({"event": "sds_call", "method": "DeltaSecrets"})
        await self.cp.DeltaAggregatedResources(request_iterator, context)


def require_str(cmd: dict, key: str) -> str:
    value = cmd.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


# --- stdin and main -------------------------------------------------------------------


def start_stdin_reader(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue) -> None:
    """Feed stdin lines into `lines` from a daemon thread; None marks EOF.

    A thread works whatever stdin is (pipe, file, tty), unlike connect_read_pipe.
    It reads fd 0 with os.read rather than sys.stdin, so it holds no buffered-IO
    lock that interpreter shutdown could trip over while the thread is blocked.
    """

    def pump():
        buf = b""
        try:
            while True:  # ends at EOF (or when the loop is gone)
                chunk = os.read(0, 65536)
                if not chunk:
                    break
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for line in complete:
                    loop.call_soon_threadsafe(lines.put_nowait, line.decode("utf-8", "replace"))
            if buf:
                loop.call_soon_threadsafe(lines.put_nowait, buf.decode("utf-8", "replace"))
            loop.call_soon_threadsafe(lines.put_nowait, None)
        except (RuntimeError, OSError):
            pass  # the loop is closed (we are exiting) or stdin is unusable

    threading.Thread(target=pump, name="stdin", daemon=True).start()


async def command_loop(cp: ControlPlane, lines: asyncio.Queue, stop: asyncio.Event) -> None:
    """Run stdin commands one at a time until `stop` / EOF."""
    while True:
        line = await lines.get()
        if line is None:
            stop.set()  # stdin EOF
            return
        line = line.strip()
        if not line:
            continue
        name = None
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("command must be a JSON object")
            name = cmd.get("cmd")
            if name == "set":
                cp.cmd_set(cmd)
            elif name == "push":
                await cp.cmd_push(cmd)
            elif name == "remove":
                cp.cmd_remove(cmd)
            elif name == "garbage":
                await cp.cmd_garbage(cmd)
            elif name == "drop_stream":
                await cp.cmd_drop_stream(cmd)
            elif name == "stop":
                cp.stop_by_command = True
                stop.set()
                return  # "ok" is printed once the server has stopped
            else:
                raise ValueError(f"unknown cmd {name!r}")
        except Exception as e:  # bad input must not kill the server
            emit({"event": "error", "cmd": name, "message": f"{type(e).__name__}: {e}"})
            continue
        emit({"event": "ok", "cmd": name})


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: pick one)")
    ap.add_argument("--unix", metavar="PATH", help="also listen on unix socket PATH")
    ap.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    ap.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")
    ap.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates from this CA")
    ap.add_argument(
        "--all-types",
        action="store_true",
        help="register every message of the public Envoy/xDS protos (for real istiod config dumps)",
    )
    args = ap.parse_args()
    if args.all_types:
        import importlib
        import pkgutil

        import envoy
        import udpa
        import xds

        for pkg in (envoy, xds, udpa):
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                if m.name.endswith("_pb2"):
                    importlib.import_module(m.name)

    cp = ControlPlane()
    server = grpc.aio.server(options=SERVER_OPTIONS)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(cp, server)
    sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(SecretService(cp), server)
    try:
        if args.tls_cert:
            with open(args.tls_cert, "rb") as f:
                chain = f.read()
            with open(args.tls_key, "rb") as f:
                key = f.read()
            ca = None
            if args.tls_client_ca:
                with open(args.tls_client_ca, "rb") as f:
                    ca = f.read()
            creds = grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)
            port = server.add_secure_port(f"127.0.0.1:{args.port}", creds)
        else:
            port = server.add_insecure_port(f"127.0.0.1:{args.port}")
        if port == 0:
            raise RuntimeError(f"cannot bind 127.0.0.1:{args.port}")
        if args.unix:
            # A stale socket file from an earlier run would make the bind fail.
            if os.path.exists(args.unix) and stat.S_ISSOCK(os.stat(args.unix).st_mode):
                os.unlink(args.unix)
            server.add_insecure_port(f"unix:{args.unix}")
    except RuntimeError as e:
        emit({"event": "error", "cmd": None, "message": f"bind failed: {e}"})
        return 1
    # Signal handlers go in before "listening": a test may SIGTERM right after it.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await server.start()
    listening = {"event": "listening", "port": port}
    if args.unix:
        listening["unix"] = args.unix
    emit(listening)
    lines: asyncio.Queue = asyncio.Queue()
    start_stdin_reader(loop, lines)
    commands = loop.create_task(command_loop(cp, lines, stop))

    await stop.wait()
    commands.cancel()
    # End open streams ourselves first (clients see UNAVAILABLE, stream_closed
    # is printed); letting server.stop() cancel them makes grpc print tracebacks.
    await cp.abort_streams(list(cp.streams.values()))
    await server.stop(grace=None)
    if args.unix and os.path.exists(args.unix):
        os.unlink(args.unix)
    if cp.stop_by_command:
        emit({"event": "ok", "cmd": "stop"})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
