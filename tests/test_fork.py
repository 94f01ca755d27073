"""Forked children work: rayon's global pool and a lock held at the fork would
leave a child hanging on its first parallel call (multiprocessing's fork
start method, gunicorn --preload, Celery prefork). Each child runs under a
timeout, so a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import referralgraph as rg
from _threads import outputs_per_thread_count

TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="needs the fork start method"
)


def _digest(*tables: pa.Table) -> str:
    h = hashlib.sha256()
    for t in tables:
        for batch in t.combine_chunks().to_batches():
            for col in batch.columns:
                for buf in col.buffers():
                    if buf is not None:
                        h.update(buf)
    return h.hexdigest()


def _everything(tmp: str) -> str:
    """One call of each parallel path (reading with timestamps, build and
    extend, integer and string ids, attribution, session history, lookups,
    reach, scores, program tables and metrics, save/load, pickle, the social
    graph's reach, spread and seeds), digested."""
    referrals, events = rg.synthetic.program(20_000, seed=3)
    g = rg.ReferralGraph.from_arrow(referrals)
    policy = rg.Policy(rates=[0.1, 0.05, 0.02], window="365d", qualify="purchased")
    r = g.attribute(events, policy)
    plain = g.attribute(events, rg.Policy(rates=[0.1, 0.05]))
    session = g.session(policy, history=events)
    last = pc.max(events["ts"]).as_py()
    path = os.path.join(tmp, f"g-{os.getpid()}.rg")
    g.save(path)
    loaded = rg.ReferralGraph.load(path)
    again = pickle.loads(pickle.dumps(g))
    grown = g.extend(pa.table({"user_id": [-1, -2], "referrer_id": [None, -1]}))
    as_str = referrals.set_column(0, "user_id", pc.cast(referrals["user_id"], pa.string()))
    as_str = as_str.set_column(1, "referrer_id", pc.cast(referrals["referrer_id"], pa.string()))
    str_events = events.set_column(1, "user_id", pc.cast(events["user_id"], pa.string()))
    by_str = rg.ReferralGraph.from_arrow(as_str).attribute(str_events, policy)
    s = rg.SocialGraph.from_arrow(rg.synthetic.social(3_000, seed=1), p=0.05)
    seeds = s.seeds(5, seed=1, epsilon=0.5)
    spread = s.spread(seeds["user_id"], simulations=200, seed=1)
    parts = [
        _digest(
            r.ledger,
            r.totals,
            plain.ledger,
            g.reach(3),
            g.scores(events),
            g.pyramid(events),
            g.channels(events),
            grown.users(),
            pa.table({"ix": g.index_of(events["user_id"])}),
            by_str.totals,
            g.users(),
            loaded.users(),
            again.users(),
            s.reach(2),
            s.edges(),
            seeds,
        ),
        repr(sorted(r.stats.items())),
        repr(sorted(g.metrics(events).items())),
        repr(session.attribute(referrals["user_id"][-1].as_py(), 1000, ts=last)),
        f"{spread.mean:.9f}",
    ]
    return "|".join(parts)


def _child(q: Any, tmp: str) -> None:
    q.put(_everything(tmp))


def test_a_forked_child_runs_every_parallel_path_after_the_parent_did(tmp_path: Any) -> None:
    expected = _everything(str(tmp_path))  # the parent's pools and caches are warm
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, str(tmp_path)))
    p.start()
    p.join(TIMEOUT_S)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("the forked child hung")
    assert p.exitcode == 0
    assert q.get(timeout=10) == expected


def test_forks_while_another_thread_is_attributing() -> None:
    """A fork can land while a call (GIL released) runs on the pool and
    allocates, or builds a graph's first-use tables (chains, keyed index):
    the child must inherit neither the allocator's lock held, nor the pool's
    busy workers, nor a table half-built (it builds its own)."""
    referrals, events = rg.synthetic.program(100_000, seed=2)
    g = rg.ReferralGraph.from_arrow(referrals)
    policy = rg.Policy(rates=[0.1, 0.05, 0.02])
    want = g.attribute(events, policy).stats
    stop = threading.Event()

    def busy() -> None:
        nonlocal g
        while not stop.is_set():
            # A fresh graph each time: its first call builds the tables.
            g = rg.ReferralGraph.from_arrow(referrals)
            g.attribute(events, policy)

    t = threading.Thread(target=busy)
    t.start()
    try:
        for i in range(12):
            time.sleep(0.013 * i)
            pid = os.fork()
            if pid == 0:  # the child: attribute once, report by exit code
                ok = g.attribute(events, policy).stats == want
                os._exit(0 if ok else 1)
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    pytest.fail("the forked child hung")
                time.sleep(0.01)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        t.join()


def test_no_call_starts_rayons_global_pool(tmp_path: Any) -> None:
    """The invariant behind the two tests above: every parallel path runs on
    the library's pool (threads named referralgraph-N). Rayon's global pool
    would add unnamed threads (named after the process, like the main one)."""
    script = f"""
import os, sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_fork import _everything
def comms():
    tasks = os.listdir("/proc/self/task")
    return [open(f"/proc/self/task/{{t}}/comm").read().strip() for t in tasks]
def unnamed():
    return sorted(c for c in comms() if not c.startswith("referralgraph"))
# The reaper (started at import) names itself once it first runs: until
# then it shows the process's name.
import time
deadline = time.monotonic() + 10
while "referralgraph-r" not in comms() and time.monotonic() < deadline:
    time.sleep(0.01)
before = unnamed()
_everything({str(tmp_path)!r})
print(before == unnamed(), before, unnamed())
"""
    (out,) = outputs_per_thread_count(script, ("3",))
    assert out.startswith("True"), out
