#!/usr/bin/env python3
"""Recompute every asset's sha256 in the demo scenario's manifest.json, in place.

An asset is any JSON object with a "path" and a "sha256" (backgrounds, sound
loops, the thumbnail, sprite bodies and layers). Key order is kept; the file
is rewritten with indent=2 and ensure_ascii=False and a final newline.

Usage:  python3 scenarios/demo/tools/update_hashes.py [PACK_DIR]
        (PACK_DIR defaults to the folder above this script)
Then check the pack with:  ./simularity check scenarios/demo
"""
import hashlib
import json
import os
import sys


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def walk(node, root, changes):
    if isinstance(node, dict):
        if isinstance(node.get("path"), str) and "sha256" in node:
            new = digest(os.path.join(root, *node["path"].split("/")))
            if node["sha256"] != new:
                changes.append(node["path"])
                node["sha256"] = new
        for value in node.values():
            walk(value, root, changes)
    elif isinstance(node, list):
        for value in node:
            walk(value, root, changes)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(here)
    manifest = os.path.join(root, "manifest.json")
    with open(manifest, encoding="utf-8") as f:
        data = json.load(f)
    changes = []
    walk(data, root, changes)
    with open(manifest, "w", encoding="utf-8", newline="\n") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    for path in sorted(set(changes)):
        print("updated", path)
    print("%d asset reference(s) changed" % len(changes))


if __name__ == "__main__":
    main()
