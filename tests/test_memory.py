"""The allocator keeps freed large blocks for reuse and gives them back on request."""

import os
import subprocess
import sys

import referralgraph as rg


def test_freed_large_blocks_are_kept_then_released() -> None:
    referrals, events = rg.synthetic.program(200_000, seed=3)
    g = rg.ReferralGraph.from_arrow(referrals)
    rg.release_memory()
    result = g.attribute(events, rg.Policy(rates=[0.1, 0.05]))
    assert result.stats["ledger_rows"] > 200_000
    del result
    kept = rg.cached_memory()
    assert kept >= 4 << 20  # the ledger's columns were large blocks
    assert rg.release_memory() == kept
    assert rg.cached_memory() == 0
    # Reusing kept blocks gives the same results.
    first = g.attribute(events, rg.Policy(rates=[0.1, 0.05])).ledger
    again = g.attribute(events, rg.Policy(rates=[0.1, 0.05])).ledger
    assert first.equals(again)


def test_the_cache_can_be_turned_off() -> None:
    code = (
        "import referralgraph as rg\n"
        "r, e = rg.synthetic.program(200_000, seed=3)\n"
        "g = rg.ReferralGraph.from_arrow(r)\n"
        "del g\n"
        "print(rg.cached_memory())\n"
    )
    env = {**os.environ, "REFERRALGRAPH_ALLOC_CACHE_MB": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
    env["REFERRALGRAPH_ALLOC_CACHE_MB"] = "64"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 0 < int(out.stdout) <= 64 << 20


def test_kept_blocks_expire_while_the_process_does_other_things() -> None:
    """Kept blocks go back after their decay even if the allocator is never
    called again (a reaper thread; before, they waited for the next call)."""
    code = (
        "import time, referralgraph as rg\n"
        "r, e = rg.synthetic.program(200_000, seed=3)\n"
        "g = rg.ReferralGraph.from_arrow(r)\n"
        "res = g.attribute(e, rg.Policy(rates=[0.1, 0.05]))\n"
        "del res\n"
        "t0 = time.monotonic()\n"
        "kept = rg.cached_memory()\n"
        "time.sleep(0.5)\n"
        "still = rg.cached_memory()\n"
        "while rg.cached_memory() and time.monotonic() - t0 < 30:\n"
        "    time.sleep(0.1)\n"
        "print(kept, still, rg.cached_memory(), time.monotonic() - t0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kept, still, after, waited = out.stdout.split()
    assert int(kept) >= 4 << 20 and int(still) > 0
    assert int(after) == 0
    assert 5 < float(waited) < 13  # the 10 s decay, not at once, not never


def test_a_forked_child_gives_its_kept_blocks_back_while_idle() -> None:
    """A forked worker (gunicorn --preload, Celery prefork) that attributes
    and then sits idle returns what it keeps: it starts its own reaper with
    its worker pool (the parent's reaper thread is not in the child)."""
    code = (
        "import os, time, referralgraph as rg\n"
        "r, e = rg.synthetic.program(200_000, seed=3)\n"
        "g = rg.ReferralGraph.from_arrow(r)\n"
        "policy = rg.Policy(rates=[0.1, 0.05])\n"
        "g.attribute(e, policy)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    res = g.attribute(e, policy)\n"
        "    del res\n"
        "    t0 = time.monotonic()\n"
        "    kept = rg.cached_memory()\n"
        "    while rg.cached_memory() and time.monotonic() - t0 < 30:\n"
        "        time.sleep(0.1)\n"
        "    print(kept, rg.cached_memory(), time.monotonic() - t0, flush=True)\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert status == 0, status\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    kept, after, waited = out.stdout.split()
    assert int(kept) >= 4 << 20
    assert int(after) == 0
    assert float(waited) < 13  # within the 10 s decay, not never


def test_huge_page_modes_give_the_same_results() -> None:
    # REFERRALGRAPH_HUGE_PAGES picks which blocks are advised for 2 MB pages
    # (tables only, the default; every large block; none): the memory's
    # page size, never the results.
    code = (
        "import hashlib, pyarrow as pa, referralgraph as rg\n"
        "r, e = rg.synthetic.program(150_000, seed=5)\n"
        "g = rg.ReferralGraph.from_bytes(rg.ReferralGraph.from_arrow(r).to_bytes())\n"
        "res = g.attribute(e, rg.Policy(rates=[0.1, 0.05, 0.02]))\n"
        "sg = g.as_social(p=0.1)\n"
        "h = hashlib.sha256()\n"
        "for t in (res.ledger, res.totals, g.reach(max_depth=3), sg.reach(k=2, method='hll')):\n"
        "    for b in t.to_batches():\n"
        "        sink = pa.BufferOutputStream()\n"
        "        with pa.ipc.new_stream(sink, b.schema) as w:\n"
        "            w.write_batch(b)\n"
        "        h.update(sink.getvalue().to_pybytes())\n"
        "print(res.stats['ledger_rows'], h.hexdigest())\n"
    )
    outs = []
    for mode in (None, "all", "off"):
        env = dict(os.environ)
        env.pop("REFERRALGRAPH_HUGE_PAGES", None)
        if mode:
            env["REFERRALGRAPH_HUGE_PAGES"] = mode
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        outs.append(out.stdout.split())
    assert int(outs[0][0]) > 150_000
    assert outs[1] == outs[0] and outs[2] == outs[0]
