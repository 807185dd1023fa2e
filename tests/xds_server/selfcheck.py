#!/usr/bin/env python3
"""Self-check for ads_server.py: drives it over stdin/stdout and talks ADS to it
with the same xds-protos stubs. Run with the project venv:

    .venv/bin/python tests/xds_server/selfcheck.py

Every wait is on an event or a response, bounded by TIMEOUT (no sleeps). Absence
of an unwanted response is checked by ordering: after an ACK/NACK/stale request
the test pushes with a custom nonce and the next response must carry it.
Prints one line per check and a closing 'N passed, N failed' line; exit 0 iff
all passed.
"""

import asyncio
import json
import os
import signal
import sys
import tempfile

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "ads_server.py")
TIMEOUT = 10.0
T = "type.googleapis.com/envoy."
CDS = T + "config.cluster.v3.Cluster"
LDS = T + "config.listener.v3.Listener"
RDS = T + "config.route.v3.RouteConfiguration"
EDS = T + "config.endpoint.v3.ClusterLoadAssignment"
SDS = T + "extensions.transport_sockets.tls.v3.Secret"

results = []


def check(name: str, cond: bool, detail="") -> None:
    results.append(bool(cond))
    print(f"{'PASS' if cond else 'FAIL'} {name}" + ("" if cond else f"  -- {detail}"), flush=True)


class Server:
    """The ads_server.py subprocess: send commands, await matching events."""

    def __init__(self, proc):
        self.proc = proc
        self.backlog = []  # events read but not yet matched

    @classmethod
    async def start(cls, *args):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, SERVER, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    async def cmd(self, obj: dict, expect_ok=True) -> dict:
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()
        if expect_ok:
            return await self.expect(lambda e: e["event"] in ("ok", "error")
                                     and e.get("cmd") == obj.get("cmd"))
        return {}

    async def expect(self, pred) -> dict:
        """Next event (in order) satisfying pred; others stay in the backlog."""
        for i, ev in enumerate(self.backlog):
            if pred(ev):
                return self.backlog.pop(i)

        async def read():
            while True:  # bounded by the wait_for below and by EOF
                line = await self.proc.stdout.readline()
                if not line:
                    raise EOFError("server stdout closed")
                ev = json.loads(line)
                if pred(ev):
                    return ev
                self.backlog.append(ev)

        return await asyncio.wait_for(read(), TIMEOUT)


def res(type_suffix: str, **fields) -> dict:
    return {"@type": T + type_suffix, **fields}


CLUSTERS = [
    res("config.cluster.v3.Cluster", name="c1", connect_timeout="1s", type="STATIC",
        typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": res(
                "extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}})},
        transport_socket={"name": "envoy.transport_sockets.tls", "typed_config": res(
            "extensions.transport_sockets.tls.v3.UpstreamTlsContext", sni="c1.test")}),
    res("config.cluster.v3.Cluster", name="c2", connect_timeout="2s", type="EDS"),
]
LISTENERS = [res(
    "config.listener.v3.Listener", name="l1",
    address={"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
    filter_chains=[{
        "filters": [{"name": "hcm", "typed_config": res(
            "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix="x", rds={"route_config_name": "r1",
                                  "config_source": {"ads": {}, "resource_api_version": "V3"}},
            http_filters=[{"name": "router", "typed_config": res(
                "extensions.filters.http.router.v3.Router")}])}],
        "transport_socket": {"name": "tls", "typed_config": res(
            "extensions.transport_sockets.tls.v3.DownstreamTlsContext")}}]),
    res("config.listener.v3.Listener", name="l2",
        address={"socket_address": {"address": "127.0.0.1", "port_value": 10001}},
        filter_chains=[{"filters": [{"name": "tcp", "typed_config": res(
            "extensions.filters.network.tcp_proxy.v3.TcpProxy",
            stat_prefix="t", cluster="c1")}]}])]
ROUTES = [res("config.route.v3.RouteConfiguration", name="r1"),
          res("config.route.v3.RouteConfiguration", name="r2")]
CLAS = [res("config.endpoint.v3.ClusterLoadAssignment", cluster_name="c1"),
        res("config.endpoint.v3.ClusterLoadAssignment", cluster_name="c2")]
SECRETS = [res("extensions.transport_sockets.tls.v3.Secret", name="s1",
               tls_certificate={"certificate_chain": {"inline_string": "x"}})]


def make_node() -> base_pb2.Node:
    node = base_pb2.Node(id="node-1")
    node.locality.region, node.locality.zone, node.locality.sub_zone = "r", "z", "sz"
    node.metadata.update({"b": 1, "a": "x"})
    return node


async def read(call):
    return await asyncio.wait_for(call.read(), TIMEOUT)


async def sotw_checks(srv: Server, channel) -> None:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    call = stub.StreamAggregatedResources()
    await call.write(discovery_pb2.DiscoveryRequest(node=make_node(), type_url=CDS))
    ev = await srv.expect(lambda e: e["event"] == "stream_open")
    sid = ev["stream"]
    check("sotw stream_open", ev["mode"] == "sotw", ev)
    ev = await srv.expect(lambda e: e["event"] == "request" and e["stream"] == sid)
    check("sotw first request event",
          ev["mode"] == "sotw" and ev["type"] == CDS and ev["nack"] is False
          and ev["node_id"] == "node-1" and ev["error"] == "" and ev["nonce"] == ""
          and ev["locality"] == {"region": "r", "zone": "z", "sub_zone": "sz"}
          and ev["metadata_keys"] == ["a", "b"], ev)

    resp = await read(call)
    cl = [cluster_pb2.Cluster.FromString(a.value) for a in resp.resources]
    check("sotw auto response (wildcard CDS)",
          resp.version_info == "v1" and resp.type_url == CDS and resp.nonce
          and [c.name for c in cl] == ["c1", "c2"], resp)
    ev = await srv.expect(lambda e: e["event"] == "pushed" and e["stream"] == sid)
    check("sotw pushed event (auto)",
          ev["nonce"] == resp.nonce and ev["names"] == ["c1", "c2"] and ev["reason"] == "auto", ev)
    first_nonce = resp.nonce

    # ACK: logged, not answered (the next response must be the custom push).
    await call.write(discovery_pb2.DiscoveryRequest(
        type_url=CDS, version_info="v1", response_nonce=resp.nonce))
    ev = await srv.expect(lambda e: e["event"] == "request" and e["stream"] == sid)
    check("sotw ACK request event", ev["nack"] is False and ev["nonce"] == resp.nonce
          and ev["version"] == "v1" and ev["node_id"] == "" and ev["locality"] is None, ev)
    await srv.cmd({"cmd": "push", "type": CDS, "nonce": "custom1"})
    resp = await read(call)
    check("sotw ACK not answered; custom push nonce", resp.nonce == "custom1", resp.nonce)

    # NACK of the latest nonce: logged with its error, not answered.
    await call.write(discovery_pb2.DiscoveryRequest(
        type_url=CDS, version_info="v1", response_nonce="custom1",
        error_detail=status_pb2.Status(code=3, message="bad cluster c1")))
    ev = await srv.expect(lambda e: e["event"] == "request" and e["stream"] == sid)
    check("sotw NACK request event", ev["nack"] is True and ev["error"] == "bad cluster c1", ev)
    # Stale nonce: ignored.
    await call.write(discovery_pb2.DiscoveryRequest(
        type_url=CDS, version_info="v1", response_nonce=first_nonce))
    await srv.expect(lambda e: e["event"] == "request" and e["stream"] == sid
                     and e["nonce"] == first_nonce)
    await srv.cmd({"cmd": "push", "type": CDS, "nonce": "custom2"})
    resp = await read(call)
    check("sotw NACK and stale nonce not answered", resp.nonce == "custom2", resp.nonce)

    # Named type (RDS): only the subscribed names that exist.
    await call.write(discovery_pb2.DiscoveryRequest(type_url=RDS, resource_names=["r1", "nope"]))
    resp = await read(call)
    names = [route_pb2.RouteConfiguration.FromString(a.value).name for a in resp.resources]
    check("sotw RDS named subscription", resp.type_url == RDS and names == ["r1"], names)
    # ACK that also adds a name: answered with the new set.
    await call.write(discovery_pb2.DiscoveryRequest(
        type_url=RDS, version_info=resp.version_info, response_nonce=resp.nonce,
        resource_names=["r1", "r2"]))
    resp = await read(call)
    names = [route_pb2.RouteConfiguration.FromString(a.value).name for a in resp.resources]
    check("sotw ACK with changed names answered", names == ["r1", "r2"], names)

    # raw_names keeps duplicate names.
    await srv.cmd({"cmd": "set", "type": CDS, "version": "v2", "raw_names": True,
                   "resources": [CLUSTERS[0], CLUSTERS[0]]})
    await srv.cmd({"cmd": "push", "type": CDS})
    resp = await read(call)
    check("raw_names duplicates sent", resp.version_info == "v2" and len(resp.resources) == 2
          and {cluster_pb2.Cluster.FromString(a.value).name for a in resp.resources} == {"c1"},
          resp)

    # Garbage: right type_url, undecodable value.
    await srv.cmd({"cmd": "garbage", "type": CDS})
    resp = await read(call)
    try:
        cluster_pb2.Cluster.FromString(resp.resources[0].value)
        decoded = True
    except DecodeError:
        decoded = False
    check("garbage resource undecodable",
          resp.type_url == CDS and resp.resources[0].type_url == CDS and not decoded, resp)
    return call, sid


async def delta_checks(srv: Server, channel):
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    call = stub.DeltaAggregatedResources()
    await call.write(discovery_pb2.DeltaDiscoveryRequest(
        node=make_node(), type_url=EDS, resource_names_subscribe=["c1"]))
    ev = await srv.expect(lambda e: e["event"] == "stream_open" and e["mode"] == "delta")
    sid = ev["stream"]
    ev = await srv.expect(lambda e: e["event"] == "request" and e["stream"] == sid)
    check("delta request event", ev["mode"] == "delta" and ev["subscribe"] == ["c1"]
          and ev["unsubscribe"] == [] and ev["initial_versions"] == {} and ev["nack"] is False
          and ev["node_id"] == "node-1", ev)
    resp = await read(call)
    check("delta subscribe -> resource",
          [(r.name, r.version) for r in resp.resources] == [("c1", "v1")]
          and endpoint_pb2.ClusterLoadAssignment.FromString(
              resp.resources[0].resource.value).cluster_name == "c1", resp)
    # ACK: not answered. Then subscribe c2: only c2 is sent (c1 already held).
    await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=EDS, response_nonce=resp.nonce))
    await call.write(discovery_pb2.DeltaDiscoveryRequest(
        type_url=EDS, resource_names_subscribe=["c2"]))
    resp = await read(call)
    check("delta ACK not answered; new subscription sends only the new name",
          [r.name for r in resp.resources] == ["c2"], resp)
    # NACK is logged.
    await call.write(discovery_pb2.DeltaDiscoveryRequest(
        type_url=EDS, response_nonce=resp.nonce,
        error_detail=status_pb2.Status(code=3, message="bad cla")))
    ev = await srv.expect(lambda e: e["event"] == "request" and e["stream"] == sid
                          and e["nonce"] == resp.nonce)
    check("delta NACK request event", ev["nack"] is True and ev["error"] == "bad cla", ev)
    # remove + push -> removed_resources.
    await srv.cmd({"cmd": "remove", "type": EDS, "names": ["c1"]})
    ok = await srv.cmd({"cmd": "push", "type": EDS})
    resp = await read(call)
    check("delta remove+push -> removed_resources",
          ok["event"] == "ok" and list(resp.removed_resources) == ["c1"]
          and [r.name for r in resp.resources] == ["c2"], resp)
    ev = await srv.expect(lambda e: e["event"] == "pushed" and e["stream"] == sid
                          and e["reason"] == "push")
    check("delta pushed event", ev["removed"] == ["c1"] and ev["names"] == ["c2"], ev)

    # Wildcard CDS with initial_resource_versions: only what the client lacks.
    await srv.cmd({"cmd": "set", "type": CDS, "version": "v3", "resources": CLUSTERS})
    await call.write(discovery_pb2.DeltaDiscoveryRequest(
        type_url=CDS, initial_resource_versions={"c1": "v3"}))
    resp = await read(call)
    check("delta wildcard honours initial_resource_versions",
          [r.name for r in resp.resources] == ["c2"], resp)
    return call, sid


async def main() -> int:
    sock = os.path.join(tempfile.mkdtemp(prefix="ads-selfcheck-"), "ads.sock")
    srv = await Server.start("--port", "0", "--unix", sock)
    ev = await srv.expect(lambda e: True)
    check("listening first", ev["event"] == "listening" and ev["port"] > 0, ev)
    port = ev["port"]

    for type_url, resources in ((CDS, CLUSTERS), (LDS, LISTENERS), (RDS, ROUTES),
                                (EDS, CLAS), (SDS, SECRETS)):
        ev = await srv.cmd({"cmd": "set", "type": type_url, "version": "v1",
                            "resources": resources})
        check(f"set {type_url.rsplit('.', 1)[-1]}", ev["event"] == "ok", ev)
    ev = await srv.cmd({"cmd": "set", "type": CDS, "version": "v1",
                        "resources": [{"@type": T + "config.cluster.v3.Cluster", "nam": "x"}]})
    check("bad resource -> error event, keeps running", ev["event"] == "error", ev)
    ev = await srv.cmd({"cmd": "nope"})
    check("unknown cmd -> error event", ev["event"] == "error", ev)

    opts = [("grpc.enable_http_proxy", 0)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as tcp, \
            grpc.aio.insecure_channel(f"unix:{sock}", options=opts) as unix:
        sotw_call, sotw_sid = await sotw_checks(srv, tcp)
        delta_call, delta_sid = await delta_checks(srv, unix)  # over the unix socket

        await srv.cmd({"cmd": "drop_stream"}, expect_ok=False)
        closed = {(await srv.expect(lambda e: e["event"] == "stream_closed"))["stream"]
                  for _ in range(2)}
        ev = await srv.expect(lambda e: e["event"] == "dropped")
        await srv.expect(lambda e: e["event"] == "ok" and e["cmd"] == "drop_stream")
        codes = []
        for call in (sotw_call, delta_call):
            try:
                while await read(call) is not grpc.aio.EOF:
                    pass  # drain anything still in flight (bounded by the stream's end)
                codes.append(await call.code())
            except grpc.aio.AioRpcError as e:
                codes.append(e.code())
        check("drop_stream closes both streams with UNAVAILABLE",
              closed == {sotw_sid, delta_sid} and ev["count"] == 2
              and codes == [grpc.StatusCode.UNAVAILABLE] * 2, (closed, ev, codes))

    ev = await srv.cmd({"cmd": "stop"})
    rc = await asyncio.wait_for(srv.proc.wait(), TIMEOUT)
    check("stop -> ok, exit 0, unix socket removed",
          ev["event"] == "ok" and rc == 0 and not os.path.exists(sock), (ev, rc))
    os.rmdir(os.path.dirname(sock))

    # SIGTERM and stdin EOF both exit 0.
    srv = await Server.start()
    await srv.expect(lambda e: e["event"] == "listening")
    srv.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.wait_for(srv.proc.wait(), TIMEOUT)
    check("SIGTERM -> exit 0", rc == 0, rc)
    srv = await Server.start()
    await srv.expect(lambda e: e["event"] == "listening")
    srv.proc.stdin.close()
    rc = await asyncio.wait_for(srv.proc.wait(), TIMEOUT)
    check("stdin EOF -> exit 0", rc == 0, rc)

    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed", flush=True)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
