"""A unit of batch work: count the words of a document. Fails on purpose for a document marked 'corrupt'."""

import json
import os
import time


def handler(event, context):
    doc = json.loads(event or b"{}")
    text = doc.get("text", "")
    if doc.get("corrupt"):
        raise ValueError(f"document {doc.get('name')!r} is corrupt")
    per_kb = float(os.environ.get("WORK_SECONDS_PER_KB", "0"))
    time.sleep(min(5.0, per_kb * max(1, len(text) // 1024) + float(doc.get("extra_seconds", 0))))
    words = len(text.split())
    print(f"{doc.get('name')}: {words} words")
    return {"name": doc.get("name"), "words": words}
