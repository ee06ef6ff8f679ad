"""Streaming union-find baseline for benches/stitch.rs (standard library only).

Reads `event_id <TAB> attribute_index <TAB> value` rows (PostgreSQL COPY text
format; attribute_index and value are \\N for an event without identifiers)
on stdin, applies the stitching blocklist given as JSON in argv[1]
([[attribute_id or null, value, is_regex], ...]) and the attribute names in
argv[2] (JSON list), joins events that share an identifier, and prints
`seconds <s>`, `events <n>`, `entities <n>`, `hash <u64>` and `rss_kb <kb>`.
The hash is the canonical partition: each event labelled by the smallest
event id of its entity, sha256("event|smallest")[:8] little-endian, summed
modulo 2**64 (the bench computes the same for the other methods).
"""
import hashlib
import json
import re
import resource
import sys
import time


def unescape(s):
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(n, n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def main():
    t0 = time.time()
    rules = json.loads(sys.argv[1])
    attrs = json.loads(sys.argv[2])
    exact = {}
    regexes = []
    for attr, value, is_regex in rules:
        if is_regex:
            regexes.append((attr, re.compile(value)))
        else:
            exact.setdefault(value.strip().lower(), []).append(attr)

    def blocked(attr, v):
        if not v.strip():
            return True
        hit = exact.get(v.strip().lower())
        if hit is not None and (None in hit or attr in hit):
            return True
        for a, rx in regexes:
            if (a is None or a == attr) and rx.search(v):
                return True
        return False

    parent = []
    ident = {}
    ev_index = {}
    events = []
    verdict = {}

    def find(x):
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for line in sys.stdin:
        ev, k, v = line.rstrip("\n").split("\t")
        e = ev_index.get(ev)
        if e is None:
            e = len(parent)
            parent.append(e)
            ev_index[ev] = e
            events.append(ev)
        if k == "\\N" or v == "\\N":
            continue
        attr = attrs[int(k) - 1]
        v = unescape(v)
        key = (attr, v)
        n = ident.get(key)
        if n is None:
            ok = verdict.get(key)
            if ok is None:
                ok = not blocked(attr, v)
                verdict[key] = ok
            if not ok:
                continue
            n = len(parent)
            parent.append(n)
            ident[key] = n
        a, b = find(e), find(n)
        if a != b:
            parent[a] = b
    smallest = {}
    for ev, e in ev_index.items():
        r = find(e)
        m = smallest.get(r)
        if m is None or ev < m:
            smallest[r] = ev
    seconds = time.time() - t0
    h = 0
    for ev, e in ev_index.items():
        d = hashlib.sha256((ev + "|" + smallest[find(e)]).encode()).digest()
        h = (h + int.from_bytes(d[:8], "little")) % (1 << 64)
    print("seconds", round(seconds, 3))
    print("events", len(events))
    print("entities", len(smallest))
    print("hash", h)
    print("rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


main()
