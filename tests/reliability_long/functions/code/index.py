"""Handler of the long reliability tests: sleeps event["seconds"], one line a second."""

import json
import time


def wait(event, context):
    seconds = float(json.loads(event or b"{}").get("seconds", 60))
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        print(f"waited {n} s", flush=True)
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    return json.dumps({"waited": seconds})
