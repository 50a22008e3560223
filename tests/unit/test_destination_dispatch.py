"""The shared-queue decisions of core.destinations, without I/O (a virtual clock, a tiny FIFO queue model)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from airflow_fc_async.core.destinations import QueueDispatch, SharePolicy, Waiter, format_failure_message
from airflow_fc_async.core.models import DestinationRecord


def record_body(request_id: str, *, condition: str = "", payload: str = '{"ok": 1}') -> str:
    return json.dumps(
        {
            "timestamp": 1728465119433,
            "requestContext": {
                "requestId": request_id,
                "functionArn": "acs:fc:cn-hangzhou:123:functions/my-fc-job",
                "condition": condition,
                "approximateInvokeCount": 2,
            },
            "requestPayload": '{"failure":true}',
            "responseContext": {"statusCode": 200, "functionError": condition or None},
            "responsePayload": payload,
        }
    )


@dataclass
class Msg:
    message_id: str
    receipt_handle: str | None
    body: str


def msgs(*bodies: str, prefix: str = "m") -> list[Msg]:
    return [Msg(f"{prefix}{i}", f"h-{prefix}{i}", b) for i, b in enumerate(bodies)]


def test_hold_schedule_and_its_bound() -> None:
    p = SharePolicy()
    assert p.foreign_hold(1, full_batch=False) == 1  # hand back at once when we saw the whole queue
    assert p.foreign_hold(1, full_batch=True) == 30  # a backlog to sweep
    assert [p.foreign_hold(k, full_batch=False) for k in (2, 3, 4, 5, 6, 7, 8)] == [
        30,
        60,
        120,
        240,
        480,
        900,
        900,
    ]
    assert p.max_touches(0.5) == 1
    assert p.max_touches(30) == 2
    assert p.max_touches(31) == 3
    assert p.max_touches(90) == 3
    assert p.max_touches(450) == 5
    assert p.max_touches(3600) == 9
    assert p.backoff(0) == 0 and p.backoff(1) == 1 and p.backoff(3) == 4 and p.backoff(10) == 10


def test_ours_is_held_foreign_is_handed_back_and_nothing_foreign_is_deleted() -> None:
    d = QueueDispatch()
    w = Waiter("req-1", hold_seconds=900)
    assert d.register(w, 0.0) is None
    batch = msgs(record_body("req-1"), "hello, not a record", record_body("req-other"))
    plan = d.plan(batch, 0.0, 30)
    assert [x.record.request_id for x in plan.deliveries] == ["req-1"]
    assert plan.deliveries[0].hold == 900 and plan.deliveries[0].waiters == (w,)
    assert plan.visibility == [("h-m1", 1), ("h-m2", 1)]
    assert plan.deletes == []
    assert d.waiting == 0


def test_short_hold_needs_no_visibility_change() -> None:
    d = QueueDispatch()
    d.register(Waiter("req-1", hold_seconds=20), 0.0)
    plan = d.plan(msgs(record_body("req-1")), 0.0, 30)
    assert (
        plan.deliveries[0].hold == 0
    )  # the receive's 30 s visibility covers it: the receive's handle is used


def test_not_delete_on_read_hands_our_record_back() -> None:
    d = QueueDispatch()
    d.register(Waiter("req-1", delete_on_read=False), 0.0)
    plan = d.plan(msgs(record_body("req-1")), 0.0, 30)
    assert plan.deliveries[0].hold is None and plan.visibility == [("h-m0", 1)]


def test_backlog_first_touch_costs_no_request_when_the_queue_already_hides_it_30s() -> None:
    d = QueueDispatch()
    d.register(Waiter("req-x"), 0.0)
    batch = msgs(*[f"foreign {i}" for i in range(16)])
    plan = d.plan(batch, 0.0, 30)
    assert plan.visibility == [] and plan.foreign == 16  # the receive itself hid them for 30 s
    plan = d.plan(batch, 0.0, 60)
    assert {s for _, s in plan.visibility} == {30}  # k=2 on a 60 s queue: an explicit 30 s


def test_repeats_back_off_and_hold_longer() -> None:
    d = QueueDispatch()
    d.register(Waiter("req-x"), 0.0)
    batch = msgs("a", "b")
    assert d.plan(batch, 0.0, 30).delay == 0  # first sight: progress
    p2 = d.plan(batch, 1.0, 30)
    assert p2.visibility == [] and p2.delay == 1  # k=2 wants 30 = the queue's own: no request; pause 1 s
    p3 = d.plan(batch, 31.0, 30)
    assert p3.visibility == [("h-m0", 60), ("h-m1", 60)] and p3.delay == 2
    d.register(Waiter("req-y"), 32.0)
    assert d.idle_batches <= 1  # a new waiter makes the receiver look again soon, not spin


def test_duplicates_and_redeliveries_are_stored_once_and_deleted() -> None:
    d = QueueDispatch()
    w = Waiter("req-1")
    d.register(w, 0.0)
    first = d.plan(msgs(record_body("req-1"), record_body("req-1"), prefix="a"), 0.0, 30)
    assert len(first.deliveries) == 1 and first.deletes == ["h-a1"]  # the copy in the same batch
    later = d.plan(msgs(record_body("req-1"), prefix="b"), 5.0, 30)
    assert later.deliveries == [] and later.deletes == ["h-b0"]  # a redelivered copy later
    # the original, seen again before the caller stored it: not deleted (storage first), not re-delivered
    again = d.plan([Msg("a0", "h-a0-2", record_body("req-1"))], 6.0, 30)
    assert again.deliveries == [] and again.deletes == []
    d.acked("req-1", 7.0, deleted=False)
    assert d.has_work(7.0)  # the stored record's message still has to go
    gone = d.plan([Msg("a0", "h-a0-3", record_body("req-1"))], 8.0, 30)
    assert gone.deletes == ["h-a0-3"]
    assert d.delivered == 1


def test_a_record_seen_before_its_waiter_is_handed_back_and_delivered_with_a_handle_later() -> None:
    """Issue 14: nothing is served from memory (a claim without a handle left its message in the queue)."""
    d = QueueDispatch()
    d.register(Waiter("someone-else", function_name="my-fc-job"), 0.0)
    plan = d.plan(msgs(record_body("req-late")), 0.0, 30)
    assert plan.deliveries == [] and plan.visibility == [("h-m0", 1)] and plan.handed_back == 1
    assert (
        d.register(Waiter("req-late", function_name="my-fc-job"), 0.5) is None
    )  # waits for the next receive
    nxt = d.plan([Msg("m0", "h2", record_body("req-late"))], 2.0, 30)
    assert [x.record.request_id for x in nxt.deliveries] == ["req-late"] and nxt.deliveries[
        0
    ].message is not None
    assert nxt.deliveries[0].hold is not None  # held with a handle for the caller's delete


def test_records_of_awaited_functions_are_never_held_while_others_are() -> None:
    """A record another process waits for is handed back at once on every receive, full batch or not (it was
    held 30 s, then up to 900 s: the cross-process loss of issue 14); a record of a function nobody here
    awaits is foreign (the sparing schedule), and so is an awaited function's orphan after record_touches."""
    p = SharePolicy(record_touches=3)
    d = QueueDispatch(p)
    d.register(Waiter("mine", function_name="my-fc-job"), 0.0)
    other_fn = record_body("x").replace("functions/my-fc-job", "functions/other-app")
    batch = msgs(record_body("theirs"), other_fn, *[f"foreign {i}" for i in range(14)])
    holds = []
    for t in range(5):
        plan = d.plan(batch, float(t * 1000), 45)
        assert not plan.deletes and not plan.deliveries  # never deleted
        holds.append(dict(plan.visibility))
    assert [h["h-m0"] for h in holds] == [1, 1, 1, 120, 240]  # 3 touches at once, then an orphan: foreign
    assert [h["h-m1"] for h in holds] == [30, 30, 60, 120, 240]  # another function: foreign from the start


def test_a_waiter_without_a_function_hands_back_no_records() -> None:
    d = QueueDispatch()
    d.register(Waiter("mine"), 0.0)
    plan = d.plan(msgs(record_body("x"), *[f"f{i}" for i in range(15)]), 0.0, 60)
    assert dict(plan.visibility)["h-m0"] == 30 and plan.handed_back == 0


def test_a_record_stored_elsewhere_is_deleted_when_seen() -> None:
    """A claim from a trigger event whose handle went stale: this process deletes the message on sight."""
    d = QueueDispatch()
    rec = DestinationRecord.from_body(record_body("req-ev"))
    assert rec is not None
    d.stored_elsewhere(rec, "m0", 0.0)
    assert d.pending("req-ev") and d.has_work(0.0)
    plan = d.plan([Msg("m0", "h9", record_body("req-ev"))], 1.0, 30)
    assert plan.deletes == ["h9"] and not d.pending("req-ev")


def test_fail_all_and_has_work() -> None:
    d = QueueDispatch()
    a, b = Waiter("1"), Waiter("2")
    d.register(a, 0)
    d.register(b, 0)
    assert d.has_work(0) and d.waiting == 2
    assert set(d.fail_all()) == {a, b}
    assert not d.has_work(0)


def test_failure_message_quotes_the_record() -> None:
    rec = DestinationRecord.from_body(
        record_body(
            "r-9",
            condition="InvocationError",
            payload='{"errorMessage":"Function timed out after 3 seconds"}',
        )
    )
    text = format_failure_message(rec)
    assert "condition=InvocationError" in text and "functionError=InvocationError" in text
    assert "Function timed out after 3 seconds" in text and "r-9" in text
    assert format_failure_message(None) == "no destination record was found"
    assert (
        len(format_failure_message(DestinationRecord.from_body(record_body("r", payload="x" * 5000)))) < 2200
    )


# -- a virtual FIFO queue (what MNS and the emulator do: oldest visible first) -----------------------------------
class FifoQueue:
    def __init__(self, visibility: int = 30) -> None:
        self.vt = visibility
        self.items: dict[str, list] = {}  # id -> [body, next_visible, dequeue_count, handle]
        self.n = 0

    def send(self, body: str) -> str:
        self.n += 1
        mid = f"id{self.n:06d}"
        self.items[mid] = [body, 0.0, 0, None]
        return mid

    def receive(self, now: float, k: int = 16) -> list[Msg]:
        out = []
        for mid, it in self.items.items():
            if it[1] <= now:
                it[1], it[2], it[3] = now + self.vt, it[2] + 1, f"{mid}:{it[2] + 1}"
                out.append(Msg(mid, it[3], it[0]))
                if len(out) == k:
                    break
        return out

    def apply(self, plan, now: float) -> list[str]:
        for handle, seconds in plan.visibility:
            self.items[handle.split(":")[0]][1] = now + seconds
        deleted = [h.split(":")[0] for h in plan.deletes]
        for d in plan.deliveries:
            if d.hold is not None and d.message is not None:
                deleted.append(d.message.message_id)  # the caller stores and acknowledges at once
        for mid in deleted:
            self.items.pop(mid, None)
        return deleted


def simulate(policy: SharePolicy, foreign: int, ours: int, horizon: float, arrive_at: float = 0.0):
    q = FifoQueue()
    foreign_ids = {q.send(f"dead letter {i}") for i in range(foreign)}
    d = QueueDispatch(policy)
    for i in range(ours):
        d.register(Waiter(f"req-{i}"), 0.0)
    now, receives, requests, deleted, sent = 0.0, 0, 0, [], False
    while d.waiting and now < horizon:
        if not sent and now >= arrive_at:
            sent = [q.send(record_body(f"req-{i}")) for i in range(ours)]
        batch = q.receive(now)
        if not batch and not sent:  # a long poll wakes when the records arrive
            now = min(now + policy.long_poll, max(now, arrive_at))
            receives += 1
            continue
        receives += 1
        plan = d.plan(batch, now, q.vt)
        requests += 1 + len(plan.visibility) + len(plan.deletes)
        deleted += q.apply(plan, now)
        now += 0.02 + plan.delay + (policy.long_poll if not batch else 0)
    max_dq = max((q.items[m][2] for m in foreign_ids), default=0)
    return d, receives, requests, max_dq, deleted, foreign_ids, now


def test_fifo_backlog_every_waiter_found_within_the_promised_touches() -> None:
    policy = SharePolicy()
    d, receives, _, max_dq, deleted, foreign_ids, elapsed = simulate(policy, 2000, 200, 600)
    assert d.waiting == 0 and d.delivered == 200
    assert not set(deleted) & foreign_ids
    assert max_dq <= policy.max_touches(elapsed) and max_dq == 1
    assert receives <= (2000 + 200) // 16 + 3


def test_fifo_backlog_naive_hand_back_at_once_starves() -> None:
    """Why the schedule holds backlog messages: handing everything back at 1 s re-serves the same 16 forever."""
    naive = SharePolicy(hand_back=1, sweep_hold=1, max_hold=1)
    d, _, _, max_dq, _, _, _ = simulate(naive, 2000, 200, 120)
    assert d.delivered == 0 and max_dq > 10


@pytest.mark.parametrize("foreign", [0, 3, 15, 40])
def test_small_queues_while_waiting_never_spin(foreign: int) -> None:
    """Records arrive after 100 s of waiting beside a few dead letters: few receives, few touches."""
    policy = SharePolicy()
    d, receives, _, max_dq, deleted, foreign_ids, elapsed = simulate(policy, foreign, 5, 300, arrive_at=100)
    assert d.delivered == 5 and not set(deleted) & foreign_ids
    assert max_dq <= policy.max_touches(elapsed) <= 4
    assert receives <= 15


def test_a_looked_at_record_comes_back_without_a_back_off() -> None:
    """Push completion only looks at a record (delete_on_read False): handed back at once; when it comes back it
    is held on the schedule's second step and the batch does not count as idle (no pause before the next record)."""
    d = QueueDispatch()
    d.register(Waiter("r1", delete_on_read=False, function_name="my-fc-job"), 0.0)
    [m] = msgs(record_body("r1"))
    first = d.plan([m], 0.0, 30)
    assert [x.record.request_id for x in first.deliveries] == ["r1"] and first.visibility == [
        (m.receipt_handle, 1)
    ]
    for t in (1.5, 40.0, 110.0):  # it keeps coming back (nobody consumes it): never an idle batch
        again = d.plan([m], t, 30)
        assert again.deliveries == [] and again.deletes == [] and again.delay == 0.0
    assert again.visibility == [(m.receipt_handle, 120)]  # held longer each time: 30 (skipped), 60, 120


def test_a_record_whose_looking_waiter_left_comes_back_without_a_back_off() -> None:
    """The poll ended the wait before the record came (the looking waiter left): its record is handed back at
    once for other processes, as any awaited function's, but its returns are not idle batches either."""
    d = QueueDispatch()
    waiter = Waiter("r2", delete_on_read=False, function_name="my-fc-job")
    d.register(Waiter("other", function_name="my-fc-job"), 0.0)  # the function stays awaited
    d.register(waiter, 0.0)
    d.unregister(waiter, 0.5)
    [m] = msgs(record_body("r2"))
    for t in (1.0, 2.5, 4.0):
        plan = d.plan([m], t, 30)
        assert plan.deliveries == [] and plan.visibility == [(m.receipt_handle, 1)] and plan.delay == 0.0
    fresh = QueueDispatch()  # without the look: the same returns back off (1 s, 2 s, ...)
    fresh.register(Waiter("other", function_name="my-fc-job"), 0.0)
    delays = [fresh.plan([m], t, 30).delay for t in (1.0, 2.5, 4.0)]
    assert delays == [0.0, 1.0, 2.0]
