#!/usr/bin/env python3
"""Generate crates/api/schemas/k8s-v1.33-proto.json: for every Kubernetes API message, its
protobuf field numbers, wire types and JSON names.

Input: the `k8s-pb` crate's generated sources (Apache-2.0, kube-rs/k8s-pb; prost code generated
from the Kubernetes `generated.proto` files), found in cargo's registry, and the OpenAPI
definitions next to the output (for the exact JSON names: prost turns `podIP` into `pod_ip`).
Usage: python3 tools/gen_proto_table.py ~/.cargo/registry/src/*/k8s-pb-0.9.0
"""
import json, os, re, sys

src = os.path.join(sys.argv[1], "src")
here = os.path.dirname(os.path.abspath(__file__))
schemas = os.path.join(here, "..", "crates", "api", "schemas")
defs = json.load(open(os.path.join(schemas, "k8s-v1.33-definitions.json")))["$defs"]

def def_name(mod_path, name):
    p = ".".join(mod_path)
    p = p.replace("apiextensions_apiserver", "apiextensions-apiserver").replace("kube_aggregator", "kube-aggregator")
    return "io.k8s." + p + "." + name

field_re = re.compile(r'#\[prost\(([^)]*)\)\]\s*pub (?:r#)?(\w+):\s*([^;]*?),\s*$', re.S)
table = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(root, f), src)
        mod_path = rel[:-3].split(os.sep)
        if mod_path[-1] in ("mod", "lib"):
            mod_path = mod_path[:-1]
        text = open(os.path.join(root, f)).read()
        for m in re.finditer(r'pub struct (\w+) \{(.*?)\n\}', text, re.S):
            name, body = m.group(1), m.group(2)
            full = def_name(mod_path, name)
            props = {k.lower(): k for k in defs.get(full, {}).get("properties", {})}
            fields = {}
            # Collapse each attribute + field declaration onto one line.
            decls = re.findall(r'#\[prost\(([^\]]*)\)\]\s*(?:#\[[^\]]*\]\s*)*pub (?:r#)?(\w+):\s*([^\n]*(?:\n\s+[^\n#/]*)*?),\n', body + "\n")
            for attrs, fname, ty in decls:
                tag = re.search(r'tag = "(\d+)"', attrs).group(1)
                ty = re.sub(r"\s+", "", ty)
                camel = re.sub(r"_(\w)", lambda x: x.group(1).upper(), fname)
                json_name = props.get(fname.replace("_", ""), camel)
                repeated = "repeated" in attrs
                kind = attrs.split(",")[0].strip()
                msg = None
                if kind == "message" or "message" in attrs and kind.startswith("btree_map"):
                    # the message type: last path segment inside Option<...>/Vec<...>/BTreeMap<String, ...>
                    inner = re.findall(r"((?:super::|crate::)*(?:\w+::)*[A-Z]\w*)>*$", ty.replace("::prost::alloc::boxed::Box<", "").rstrip(">"))
                    t = inner[-1] if inner else ty
                    parts = t.split("::")
                    base = list(mod_path)
                    while parts and parts[0] == "super":
                        base = base[:-1]; parts = parts[1:]
                    if parts and parts[0] == "crate":
                        base = []; parts = parts[1:]
                    msg = def_name(base + parts[:-1], parts[-1])
                if kind.startswith("btree_map"):
                    vt = re.search(r'btree_map = "string, (\w+)"', attrs).group(1)
                    fields[tag] = [json_name, "map", msg if vt == "message" else vt, False]
                elif kind == "bytes":
                    fields[tag] = [json_name, "bytes", None, repeated]
                elif kind == "message":
                    fields[tag] = [json_name, "message", msg, repeated]
                else:
                    fields[tag] = [json_name, kind, None, repeated]
            table[full] = fields
json.dump(table, open(os.path.join(schemas, "k8s-v1.33-proto.json"), "w"), separators=(",", ":"), sort_keys=True)
print(len(table), "messages")
