"""A unit of batch work: count the words of a document.

A document marked ``corrupt`` always fails; one marked ``flaky`` fails on its first run only (a transient
outage: a marker file remembers the first attempt), so a re-run of that execution succeeds.
"""

import json
import os
import tempfile
import time


def handler(event, context):
    doc = json.loads(event or b"{}")
    name = str(doc.get("name"))
    text = doc.get("text", "")
    if doc.get("corrupt"):
        raise ValueError(f"document {name!r} is corrupt")
    if doc.get("flaky"):
        marker = os.path.join(tempfile.gettempdir(), f"fc-batch-flaky-{doc['flaky']}-{name}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise ConnectionError(f"storage unavailable while reading {name!r} (transient)")
    per_kb = float(os.environ.get("WORK_SECONDS_PER_KB", "0"))
    time.sleep(min(5.0, per_kb * max(1, len(text) // 1024) + float(doc.get("extra_seconds", 0))))
    words = len(text.split())
    print(f"{name}: {words} words")
    return {"name": name, "words": words}
