#!/usr/bin/env bash
# Re-records traces/samples/python-json.trace.zst: Debian's python3, every object through malloc,
# building, serialising and parsing a JSON document (a real program with realistic lifetimes);
# and traces/samples/python-os-calls.trace.zst (format 1.2): python3 with its own small-object
# allocator, whose arenas it maps with mmap, recorded with --os-calls.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${CARGO_TARGET_DIR:-$HOME/.cache/alloclab/target}/release
PYTHONMALLOC=malloc "$bin/record" -o "$here/python-json.trace.zst" -- /usr/bin/python3 -c '
import json
doc = {"users": [{"id": i, "name": "user%d" % i, "tags": ["t%d" % (i % 7), "x"], "score": i * 0.5}
                 for i in range(1500)]}
for _ in range(2):
    text = json.dumps(doc)
    back = json.loads(text)
print(len(text), len(back["users"]))
'
"$bin/record" --os-calls -o "$here/python-os-calls.trace.zst" -- /usr/bin/python3 -c '
import json
doc = [{"id": i, "name": "user%d" % i, "tags": ["t%d" % (i % 7)]} for i in range(20000)]
text = json.dumps(doc)
del doc
back = json.loads(text)
print(len(text), len(back))
'
