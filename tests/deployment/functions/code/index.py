"""Handler of the deployment tier: sleeps event["seconds"] (a line every 5 s), returns the item it was given."""

import json
import time


def wait(event, context):
    body = json.loads(event or b"{}")
    seconds = float(body.get("seconds", 5))
    end = time.monotonic() + seconds
    print(f"item {body.get('item')}: waiting {seconds:g} s", flush=True)
    while time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
    print(f"item {body.get('item')}: done", flush=True)
    return json.dumps({"item": body.get("item"), "waited": seconds})
