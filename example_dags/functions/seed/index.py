"""The seed document's function: works longer than its timeout allows, so FC fails it (and retries once).

``work_seconds`` in the event shortens the work (the dead-letter handler's re-run sets it: then it succeeds).
"""

import json
import time


def handler(event, context):
    request = json.loads(event or b"{}")
    seconds = float(request.get("work_seconds", 3600))
    print(f"received {request}; working for {seconds:g} s")
    for minute in range(int(seconds // 60)):
        print(f"still working, minute {minute}")
        time.sleep(60)
    time.sleep(seconds % 60)
    return {"done": True, "worked_seconds": seconds}
