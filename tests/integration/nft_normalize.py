#!/usr/bin/env python3
"""Reads `nft -j list table ...` and prints it without what changes from run
to run (handles, counter values, set elements), for comparing rulesets."""
import json
import sys

def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if k not in ("handle", "packets", "bytes", "elem", "expires")}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o

data = json.load(sys.stdin)["nftables"]
print(json.dumps([strip(o) for o in data if "metainfo" not in o], indent=1, sort_keys=True))
