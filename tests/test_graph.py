"""ReferralGraph ingest: input types, structure, bad input, persistence, threads."""

from __future__ import annotations

import datetime as dt
import pickle
import threading

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import referralgraph as rg
from _threads import assert_releases_the_gil
from hypothesis import given
from hypothesis import strategies as st
from referralgraph import _core


def chain_table(**kw: object) -> pa.Table:
    return pa.table({"user_id": [1, 2, 3], "referrer_id": [None, 1, 2], **kw})


def parents(g: rg.ReferralGraph) -> dict[object, object]:
    u = g.users().to_pydict()
    return dict(zip(u["user_id"], u["referrer_id"], strict=True))


# --- structure -------------------------------------------------------------


def test_chain_shape():
    g = rg.ReferralGraph.from_arrow(chain_table())
    assert (g.num_users, g.num_roots, g.max_depth) == (3, 1, 2)
    assert parents(g) == {1: None, 2: 1, 3: 2}
    assert g.users().column("depth").to_pylist() == [0, 1, 2]
    assert len(g) == 3
    assert "users=3" in repr(g)


def test_referrer_without_a_row_is_an_implicit_root():
    g = rg.ReferralGraph.from_arrow(pa.table({"user_id": [5, 6], "referrer_id": [99, 5]}))
    assert g.num_users == 3 and g.num_roots == 1
    assert parents(g) == {99: None, 5: 99, 6: 5}


def test_users_are_numbered_topologically_whatever_the_row_order():
    # Rows not sorted by join: 3's referrer (2) comes after it.
    g = rg.ReferralGraph.from_arrow(pa.table({"user_id": [3, 1, 2], "referrer_id": [2, None, 1]}))
    ids = g.user_ids().to_pylist()
    pos = {u: i for i, u in enumerate(ids)}
    for u, p in parents(g).items():
        if p is not None:
            assert pos[p] < pos[u]
    assert g.index_of([3, 1, 42]).to_pylist() == [pos[3], pos[1], None]


def test_index_of_round_trips_on_a_synthetic_program():
    referrals, _ = rg.synthetic.program(20_000, seed=2)
    g = rg.ReferralGraph.from_arrow(referrals)
    ids = g.user_ids()
    assert g.index_of(ids).to_pylist() == list(range(g.num_users))


@pytest.mark.parametrize(
    "id_type",
    [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.uint64()],
)
def test_any_integer_id_type_is_widened(id_type):
    t = pa.table(
        {
            "user_id": pa.array([1, 2, 3], id_type),
            "referrer_id": pa.array([None, 1, 2], id_type),
        }
    )
    g = rg.ReferralGraph.from_arrow(t)
    assert g.id_type == "int64"
    assert g.users().column("user_id").type == pa.int64()
    assert parents(g) == {1: None, 2: 1, 3: 2}


@pytest.mark.parametrize("str_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_string_id_types(str_type):
    t = pa.table(
        {
            "user_id": pa.array(["ann", "bob", "cy"], str_type),
            "referrer_id": pa.array([None, "ann", "bob"], str_type),
        }
    )
    g = rg.ReferralGraph.from_arrow(t)
    assert g.id_type == "string"
    assert parents(g) == {"ann": None, "bob": "ann", "cy": "bob"}


def test_dictionary_encoded_string_ids():
    t = pa.table(
        {
            "user_id": pa.array(["a", "b"]).dictionary_encode(),
            "referrer_id": pa.array([None, "a"]).dictionary_encode(),
        }
    )
    assert parents(rg.ReferralGraph.from_arrow(t)) == {"a": None, "b": "a"}


def test_renamed_columns_and_optional_ones():
    t = pa.table({"uid": [1, 2], "ref": [None, 1], "when": pa.array([0, 5], pa.timestamp("s"))})
    g = rg.ReferralGraph.from_arrow(t, user_id="uid", referrer_id="ref", joined_at="when")
    assert g.users().column("joined_at").to_pylist() == [
        dt.datetime(1970, 1, 1),
        dt.datetime(1970, 1, 1, 0, 0, 5),
    ]
    assert "channel" not in g.users().column_names
    g2 = rg.ReferralGraph.from_arrow(t, user_id="uid", referrer_id="ref", joined_at=None)
    assert "joined_at" not in g2.users().column_names


@pytest.mark.parametrize(
    "arr",
    [
        pa.array([1_000_000, 2_000_000], pa.timestamp("us", tz="Europe/Paris")),
        pa.array([1_000, 2_000], pa.timestamp("ms")),
        pa.array([1, 2], pa.timestamp("s", tz="UTC")),
        pa.array([10**9, 2 * 10**9], pa.timestamp("ns")),
        pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date32()),
        pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date64()),
    ],
)
def test_joined_at_any_unit_zone_or_date(arr):
    t = pa.table({"user_id": [1, 2], "referrer_id": [None, 1], "joined_at": arr})
    out = rg.ReferralGraph.from_arrow(t).users().column("joined_at")
    assert out.type.unit == "ns"
    assert out.type.tz == getattr(arr.type, "tz", None)
    expected = arr.cast(pa.timestamp("ns", tz=getattr(arr.type, "tz", None)))
    assert out.to_pylist() == expected.to_pylist()


def test_channel_is_kept():
    t = chain_table(channel=["ads", None, None])
    assert rg.ReferralGraph.from_arrow(t).users().column("channel").to_pylist() == [
        "ads",
        None,
        None,
    ]


# --- every input kind --------------------------------------------------------


def test_polars_pandas_reader_and_duckdb_like_inputs():
    base = parents(rg.ReferralGraph.from_arrow(chain_table()))
    pdf = pd.DataFrame({"user_id": [1, 2, 3], "referrer_id": [None, 1, 2]}).astype(
        {"referrer_id": "Int64"}
    )
    inputs = [
        pl.DataFrame({"user_id": [1, 2, 3], "referrer_id": [None, 1, 2]}),
        pdf,
        pa.RecordBatchReader.from_batches(chain_table().schema, chain_table().to_batches()),
        chain_table().to_batches()[0],
        pa.concat_tables([chain_table().slice(0, 1), chain_table().slice(1)]),
    ]
    for data in inputs:
        assert parents(rg.ReferralGraph.from_arrow(data)) == base, type(data)


def test_polars_string_ids():
    df = pl.DataFrame({"user_id": ["a", "b"], "referrer_id": [None, "a"]})
    assert parents(rg.ReferralGraph.from_arrow(df)) == {"a": None, "b": "a"}


def test_not_arrow_is_a_type_error():
    with pytest.raises(TypeError, match="Arrow-compatible"):
        rg.ReferralGraph.from_arrow({"user_id": [1]})
    with pytest.raises(TypeError):
        rg.ReferralGraph()


# --- bad input ----------------------------------------------------------------


def test_missing_column_is_a_schema_error():
    with pytest.raises(rg.SchemaError, match='no column "referrer_id"'):
        rg.ReferralGraph.from_arrow(pa.table({"user_id": [1]}))
    with pytest.raises(rg.SchemaError, match='no column "when"'):
        rg.ReferralGraph.from_arrow(chain_table(), joined_at="when")


def test_float_ids_and_mixed_id_types_are_schema_errors():
    with pytest.raises(rg.SchemaError, match="user_id has type Float64"):
        rg.ReferralGraph.from_arrow(pa.table({"user_id": [1.0], "referrer_id": [None]}))
    with pytest.raises(rg.SchemaError, match="referrer_id holds string ids"):
        rg.ReferralGraph.from_arrow(pa.table({"user_id": [1], "referrer_id": ["a"]}))
    with pytest.raises(rg.SchemaError, match="joined_at has type Utf8"):
        rg.ReferralGraph.from_arrow(chain_table(joined_at=["x", "y", "z"]))


def test_null_user_id():
    t = pa.table({"user_id": [1, None, 3], "referrer_id": [None, 1, 1]})
    with pytest.raises(rg.InvalidInputError, match=r"column user_id, row 1: null user id"):
        rg.ReferralGraph.from_arrow(t)
    g = rg.ReferralGraph.from_arrow(t, on_invalid="drop")
    assert g.num_users == 2
    assert g.issues.to_pylist() == [
        {
            "row": 1,
            "id": None,
            "column": "user_id",
            "kind": "null_id",
            "message": "null user id: row left out",
        }
    ]


def test_duplicate_user():
    t = pa.table({"user_id": [1, 2, 1], "referrer_id": [None, 1, 2]})
    with pytest.raises(
        rg.DuplicateUserError, match=r"row 2: duplicate user id 1 \(first seen on row 0\)"
    ):
        rg.ReferralGraph.from_arrow(t)
    g = rg.ReferralGraph.from_arrow(t, on_invalid="drop")
    assert parents(g) == {1: None, 2: 1}
    assert g.issues.column("kind").to_pylist() == ["duplicate_user"]
    assert g.issues.column("row").to_pylist() == [2]


def test_self_referral():
    t = pa.table({"user_id": ["a", "b"], "referrer_id": [None, "b"]})
    with pytest.raises(
        rg.InvalidInputError, match=r'referrer_id, row 1 \(id "b"\): user refers themself'
    ):
        rg.ReferralGraph.from_arrow(t)
    g = rg.ReferralGraph.from_arrow(t, on_invalid="drop")
    assert g.num_roots == 2
    assert g.issues.column("kind").to_pylist() == ["self_referral"]


def test_cycle_lists_its_members():
    t = pa.table({"user_id": [1, 2, 3, 4], "referrer_id": [3, 1, 2, None]})
    with pytest.raises(rg.CycleError, match="referral cycle") as e:
        rg.ReferralGraph.from_arrow(t)
    assert sorted(e.value.cycle) == ["1", "2", "3"]
    assert isinstance(e.value, ValueError)


def test_cycle_drop_breaks_at_the_latest_joiner():
    t = pa.table(
        {
            "user_id": [1, 2, 3],
            "referrer_id": [3, 1, 2],
            "joined_at": pa.array([10, 30, 20], pa.timestamp("s")),
        }
    )
    g = rg.ReferralGraph.from_arrow(t, on_invalid="drop")
    assert parents(g) == {2: None, 3: 2, 1: 3}
    (issue,) = g.issues.to_pylist()
    assert issue["kind"] == "cycle" and issue["id"] == "2" and issue["row"] == 1


def test_cycle_ties_in_join_time_break_at_the_larger_id():
    t = pa.table({"user_id": [1, 2], "referrer_id": [2, 1]})
    g = rg.ReferralGraph.from_arrow(t, on_invalid="drop")
    assert parents(g) == {2: None, 1: 2}


def test_million_user_ring_is_found():
    n = 1_000_000
    ids = np.arange(n)
    t = pa.table({"user_id": ids, "referrer_id": (ids + 1) % n})
    with pytest.raises(rg.CycleError) as e:
        rg.ReferralGraph.from_arrow(t)
    assert len(e.value.cycle) == n


def test_deep_chain_builds():
    n = 1_000_000
    ids = np.arange(1, n + 1)
    g = rg.ReferralGraph.from_arrow(pa.table({"user_id": ids, "referrer_id": ids - 1}))
    assert g.max_depth == n and g.num_roots == 1


def test_uint64_overflow_and_out_of_range_timestamp():
    t = pa.table(
        {"user_id": pa.array([2**63], pa.uint64()), "referrer_id": pa.array([None], pa.uint64())}
    )
    with pytest.raises(rg.InvalidInputError, match=r"row 0 .* does not fit in int64"):
        rg.ReferralGraph.from_arrow(t)
    t = pa.table(
        {"user_id": [1], "referrer_id": [None], "joined_at": pa.array([10**12], pa.timestamp("s"))}
    )
    with pytest.raises(rg.InvalidInputError, match="joined_at, row 0"):
        rg.ReferralGraph.from_arrow(t)


def test_bad_on_invalid():
    with pytest.raises(ValueError, match="on_invalid"):
        rg.ReferralGraph.from_arrow(chain_table(), on_invalid="ignore")  # type: ignore[arg-type]


def test_panic_becomes_referralgraph_error():
    with pytest.raises(rg.ReferralGraphError, match="internal error"):
        _core._panic_for_test()


def test_exceptions_pickle():
    e = rg.CycleError("referral cycle: 1 -> 2")
    assert str(pickle.loads(pickle.dumps(e))) == str(e)


# --- property: drop mode keeps every good row and reports every bad one -----

rows = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 30)), st.one_of(st.none(), st.integers(0, 30))),
    max_size=40,
)


@given(rows)
def test_drop_mode_accounts_for_every_row(rs):
    t = pa.table(
        {
            "user_id": pa.array([u for u, _ in rs], pa.int64()),
            "referrer_id": pa.array([r for _, r in rs], pa.int64()),
        }
    )
    g = rg.ReferralGraph.from_arrow(t, on_invalid="drop")
    issues = g.issues.to_pylist()
    left_out = {i["row"] for i in issues if i["kind"] in ("null_id", "duplicate_user")}
    kept_ids = {rs[i][0] for i in range(len(rs)) if i not in left_out}
    users = g.users().to_pydict()
    assert kept_ids <= set(users["user_id"])
    # Every kept user keeps its referral unless an issue says it was dropped.
    repaired = {i["row"] for i in issues if i["kind"] in ("self_referral", "cycle")}
    par = dict(zip(users["user_id"], users["referrer_id"], strict=True))
    for i, (u, r) in enumerate(rs):
        if i in left_out:
            continue
        assert par[u] == (None if i in repaired else r)
    # A valid forest: depth is parent's depth + 1.
    depth = dict(zip(users["user_id"], users["depth"], strict=True))
    for u, p in par.items():
        assert depth[u] == (0 if p is None else depth[p] + 1)
    # Strict mode raises exactly when there was something to report.
    if issues:
        with pytest.raises(rg.ReferralGraphError):
            rg.ReferralGraph.from_arrow(t)
    else:
        assert rg.ReferralGraph.from_arrow(t).num_users == g.num_users


@given(st.permutations(list(range(12))))
def test_row_order_does_not_change_the_forest(perm):
    users = list(range(12))
    refs = [None, 0, 0, 1, 1, 2, 5, 5, 6, 100, 9, 3]
    t = pa.table({"user_id": users, "referrer_id": refs}).take(perm)
    g = rg.ReferralGraph.from_arrow(t)
    assert parents(g) == {**dict(zip(users, refs, strict=True)), 100: None}
    assert g.max_depth == 4


# --- persistence, pickle, extend ----------------------------------------------


def test_save_load_pickle_round_trip(tmp_path):
    referrals, _ = rg.synthetic.program(5_000, seed=1)
    g = rg.ReferralGraph.from_arrow(referrals)
    path = tmp_path / "g.rg"
    g.save(path)
    for h in (rg.ReferralGraph.load(path), pickle.loads(pickle.dumps(g))):
        assert h.users().equals(g.users())
        assert (h.num_users, h.num_roots, h.max_depth) == (g.num_users, g.num_roots, g.max_depth)
    assert len(pickle.dumps(g)) < 40 * g.num_users


def test_corrupt_or_truncated_file_is_invalid_input(tmp_path):
    g = rg.ReferralGraph.from_arrow(chain_table())
    path = tmp_path / "g.rg"
    g.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(rg.InvalidInputError, match="corrupt"):
        rg.ReferralGraph.load(path)
    flipped = bytearray(data)
    flipped[20] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(rg.InvalidInputError, match="corrupt graph file"):
        rg.ReferralGraph.load(path)
    flipped = bytearray(data)
    flipped[-20] ^= 0xFF  # inside the last array: only the checksum can tell
    path.write_bytes(bytes(flipped))
    with pytest.raises(rg.InvalidInputError, match="checksum"):
        rg.ReferralGraph.load(path)
    path.write_bytes(b"not a graph at all")
    with pytest.raises(rg.InvalidInputError):
        rg.ReferralGraph.load(path)
    with pytest.raises(OSError):
        rg.ReferralGraph.load(tmp_path / "missing.rg")


def test_extend_adds_users_and_keeps_the_old_graph():
    g = rg.ReferralGraph.from_arrow(chain_table(channel=["ads", None, None]))
    h = g.extend(pa.table({"user_id": [4, 5, 6], "referrer_id": [3, 4, 77]}))
    assert g.num_users == 3
    assert h.num_users == 7 and h.max_depth == 4 and h.num_roots == 2
    assert parents(h) == {1: None, 2: 1, 3: 2, 4: 3, 5: 4, 77: None, 6: 77}
    assert h.user_ids().to_pylist()[:3] == [1, 2, 3]
    assert h.users().column("channel").to_pylist()[0] == "ads"


def test_extend_rejects_duplicates_and_cycles():
    g = rg.ReferralGraph.from_arrow(chain_table())
    with pytest.raises(rg.DuplicateUserError, match="already in the graph"):
        g.extend(pa.table({"user_id": [2], "referrer_id": [None]}))
    with pytest.raises(rg.CycleError):
        g.extend(pa.table({"user_id": [10, 11], "referrer_id": [11, 10]}))
    with pytest.raises(rg.SchemaError):
        g.extend(pa.table({"user_id": ["x"], "referrer_id": [None]}))
    h = g.extend(pa.table({"user_id": [2, 9], "referrer_id": [None, 1]}), on_invalid="drop")
    assert h.num_users == 4 and h.issues.column("kind").to_pylist() == ["duplicate_user"]


def test_extend_matches_a_full_build():
    referrals, _ = rg.synthetic.program(4_000, seed=5)
    first, rest = referrals.slice(0, 2_500), referrals.slice(2_500)
    g = rg.ReferralGraph.from_arrow(first).extend(rest)
    full = rg.ReferralGraph.from_arrow(referrals)
    assert parents(g) == parents(full)
    assert g.max_depth == full.max_depth and g.num_roots == full.num_roots


# --- synthetic programs, threads ------------------------------------------------


def test_synthetic_program_is_reproducible_and_realistic():
    r1, e1 = rg.synthetic.program(30_000, seed=7)
    r2, e2 = rg.synthetic.program(30_000, seed=7)
    assert r1.equals(r2) and e1.equals(e2)
    assert not rg.synthetic.program(30_000, seed=8)[0].equals(r1)
    assert r1.schema.field("joined_at").type == pa.timestamp("ns", tz="UTC")
    assert e1.schema.field("amount").type == pa.int64()
    g = rg.ReferralGraph.from_arrow(r1)
    fanout = pl.from_arrow(g.users()).group_by("referrer_id").len().get_column("len")
    assert fanout.max() > 50 * fanout.mean()  # opinion leaders
    channels = set(r1.column("channel").drop_null().to_pylist())
    assert channels == {"ads", "packaging_qr", "store", "social", "partner"}
    amounts = e1.column("amount").to_numpy()
    assert (amounts < 0).any() and (amounts > 0).mean() > 0.9


def test_concurrent_readers_share_one_graph():
    referrals, _ = rg.synthetic.program(50_000, seed=3)
    g = rg.ReferralGraph.from_arrow(referrals)
    ids = g.user_ids()
    expected = g.users()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(5):
                assert g.index_of(ids).to_pylist()[:100] == list(range(100))
                assert g.users().equals(expected)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_build_releases_the_gil():
    referrals, _ = rg.synthetic.program(1_000_000, seed=1, events_per_user=0)
    assert_releases_the_gil(lambda: rg.ReferralGraph.from_arrow(referrals))
