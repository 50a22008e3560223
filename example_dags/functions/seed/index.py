"""The seed document's function: works longer than its timeout allows, so FC fails it (and retries once)."""

import json
import time


def handler(event, context):
    request = json.loads(event or b"{}")
    print(f"received {request}; working for 3600 s")
    for minute in range(60):
        print(f"still working, minute {minute}")
        time.sleep(60)
    return {"done": True}
