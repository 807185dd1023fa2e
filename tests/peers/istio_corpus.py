#!/usr/bin/env python3
"""Turns a real Envoy `/config_dump` of an Istio proxy into what an ADS server serves.

Input: one config dump (JSON) as `istioctl proxy-config all -o json` or Envoy's
`/config_dump?include_eds` prints it (tests/fixtures/istio/*.json, sources in SOURCES.md).
Output (stdout, JSON): {"bootstrap": <the dump's bootstrap>, "resources": {type_url: [...]}}
with every dynamic listener, cluster, route table and endpoint assignment, each a proto-JSON
object with "@type" that tests/xds_server/ads_server.py can `set`.

The one change made to the resources: an `Any` whose type is not in the public Envoy protos
(`xds-protos`, what upstream Envoy 1.40 knows) — Istio's own filters such as
`envoy.tcp.metadataexchange.config.MetadataExchange` or `stats.PluginConfig` — is rewritten as
a `udpa.type.v1.TypedStruct` with the same type URL and its fields as the struct value, the
form istiod itself uses for them in many versions. Without it the dump could not be encoded
at all; both proxies under test get the identical rewritten input. Secrets are not taken
(their keys are redacted in any dump); tests serve their own. An EDS cluster whose assignment
the dump lacks (a dump taken without `include_eds`) gets an empty one, as istiod sends for a
service without endpoints: otherwise Envoy would keep warming it and never ask for listeners.
A dump of route tables alone gets a plain listener per table that fetches it over RDS.
"""
import importlib
import json
import pkgutil
import sys

from google.protobuf import descriptor_pool

TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def import_all():
    """Registers every generated message of the public Envoy/xDS protos."""
    import envoy
    import udpa
    import xds

    for pkg in (envoy, xds, udpa):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if m.name.endswith("_pb2"):
                importlib.import_module(m.name)


def known(type_url):
    try:
        descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
        return True
    except KeyError:
        return False


def fix(v):
    """Rewrites unknown `Any`s (depth first) as TypedStruct."""
    if isinstance(v, list):
        return [fix(x) for x in v]
    if not isinstance(v, dict):
        return v
    out = {k: fix(x) for k, x in v.items()}
    t = out.get("@type")
    if isinstance(t, str) and not known(t):
        value = {k: x for k, x in out.items() if k != "@type"}
        return {"@type": TYPED_STRUCT, "type_url": t, "value": value}
    return out


def with_type(res, type_url):
    res = dict(res)
    res.setdefault("@type", type_url)
    return res


def extract(dump):
    configs = dump.get("configs", [])
    if isinstance(configs, dict):  # very old dumps keyed configs by name
        configs = list(configs.values())
    bootstrap = {}
    out = {LDS: [], CDS: [], RDS: [], EDS: []}
    for c in configs:
        t = c.get("@type", "")
        if t.endswith("BootstrapConfigDump"):
            bootstrap = c.get("bootstrap", {})
        elif t.endswith("ListenersConfigDump"):
            for d in c.get("dynamic_listeners", []):
                state = d.get("active_state") or d.get("warming_state")
                if state and "listener" in state:
                    out[LDS].append(with_type(state["listener"], LDS))
        elif t.endswith("ClustersConfigDump"):
            for d in c.get("dynamic_active_clusters", []) + c.get("dynamic_warming_clusters", []):
                out[CDS].append(with_type(d["cluster"], CDS))
        elif t.endswith("RoutesConfigDump"):
            for d in c.get("dynamic_route_configs", []):
                out[RDS].append(with_type(d["route_config"], RDS))
        elif t.endswith("EndpointsConfigDump"):
            for d in c.get("dynamic_endpoint_configs", []):
                out[EDS].append(with_type(d["endpoint_config"], EDS))
    # A routes-only dump (istioctl's route testdata) gets one listener per table, an HCM that
    # fetches it over RDS, so a proxy asks for the tables at all.
    if out[RDS] and not out[LDS]:
        for i, r in enumerate(out[RDS]):
            out[LDS].append({
                "@type": LDS, "name": "harness_rds_%d" % i,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18000 + i}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "harness", "rds": {"route_config_name": r["name"], "config_source": {"ads": {}, "resource_api_version": "V3"}},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}],
            })
    have = {e.get("cluster_name") for e in out[EDS]}
    for c in out[CDS]:
        if c.get("type") == "EDS":
            name = (c.get("eds_cluster_config") or {}).get("service_name") or c.get("name")
            if name and name not in have:
                out[EDS].append({"@type": EDS, "cluster_name": name})
                have.add(name)
    return bootstrap, out


def main():
    import_all()
    with open(sys.argv[1]) as f:
        dump = json.load(f)
    bootstrap, resources = extract(dump)
    json.dump({"bootstrap": fix(bootstrap), "resources": {k: fix(v) for k, v in resources.items()}}, sys.stdout)


if __name__ == "__main__":
    main()
