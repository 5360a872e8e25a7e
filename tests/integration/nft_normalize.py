#!/usr/bin/env python3
"""Reads `nft -j list table ...` and prints it without what changes from run
to run (handles, counter values, set elements), for comparing rulesets."""
import json
import sys

def strip(o):
    # The queue statement is the native one or the xtables target,
    # whichever the kernel takes: the same to the packet.
    if isinstance(o, dict) and ("queue" in o or o.get("xt", {}).get("name") == "NFQUEUE"):
        return "NFQUEUE"
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if k not in ("handle", "packets", "bytes", "elem", "expires")}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o

data = json.load(sys.stdin)["nftables"]
print(json.dumps([strip(o) for o in data if "metainfo" not in o], indent=1, sort_keys=True))
