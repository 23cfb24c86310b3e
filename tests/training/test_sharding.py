"""Sharding plans (the default planner, pinning, the rebalance) and the host-side routing of a batch's lookups,
with the all-to-all's round schedule simulated in numpy for 2 to 8 ranks."""
import numpy as np
import pytest

from fixtures.specs import spec_of
from src.training.sharding import Router, ShardingError, make_plan


def test_the_default_planner():
    """auto: tables up to the batch replicated, a table over a rank's share row-wise, the rest whole on one rank,
    balanced; entries checked with the entry named."""
    sizes = [3, 50, 1000, 20000, 7, 400, 900]
    p = make_plan(spec_of(sizes), 2, ["auto"], 16)
    assert p.kinds == ("replicated", "table", "table", "row", "replicated", "table", "table")
    assert p.owners[0] == -1 and sorted(p.owners[i] for i in (1, 2, 5, 6)) == [0, 0, 1, 1]
    per_rank = p.rows_per_rank()
    assert per_rank.sum() == sum(sizes) + 10 and abs(int(per_rank[0]) - int(per_rank[1])) <= 1000
    for r in range(2):                                            # replicated first, then the rank's parts
        segs = p.segments(r)
        assert segs[:2] == [(0, 3), (21053, 21060)] and sum(hi - lo for lo, hi in segs) == per_rank[r]
    pinned = make_plan(spec_of(sizes), 3, ["table:2"] * 7, 16)
    assert set(pinned.owners) == {2} and pinned.rows_per_rank().tolist() == [0, 0, sum(sizes)]
    with pytest.raises(ShardingError, match=r"entry 1 = 'tabel'"):
        make_plan(spec_of(sizes), 2, ["row", "tabel"] + ["row"] * 5, 16)
    with pytest.raises(ShardingError, match=r"entry 0 = 'table:5': rank 5 does not exist"):
        make_plan(spec_of(sizes), 2, ["table:5"], 16)
    with pytest.raises(ShardingError, match=r"has 2 entries"):
        make_plan(spec_of(sizes), 2, ["row", "row"], 16)


def test_routing_sends_each_owner_its_distinct_rows_and_brings_every_lookup_back():
    """Every rank's send blocks hold only rows that owner has, each once; the vectors an owner returns, put
    back by `inverse`, are exactly the looked-up rows (the fused table here is its own row numbers)."""
    sizes = [3, 50, 1000, 20000, 7, 400]
    p = make_plan(spec_of(sizes), 3, ["row", "table:2", "replicated", "row", "table", "table"], 16)
    rng = np.random.default_rng(0)
    ids = np.stack([rng.integers(0, n, 64) for n in sizes], 1).astype(np.int32)
    ids[:, 3] = ids[0, 3]                                          # one row asked 64 times: sent once
    local = [np.concatenate([np.arange(lo, hi) for lo, hi in p.segments(k)]) for k in range(3)]
    want = ids + p.offsets[None, :]
    for r in range(3):
        router = Router(p, r)
        routed = router.route(ids)
        c = router.capacity(routed.need, 64)
        send, inverse = router.pack(routed, c)
        assert c >= routed.need and c % 8 == 0
        blocks = send.reshape(3, c)
        back = np.concatenate([np.where(blocks[k] >= 0, local[k][np.maximum(blocks[k], 0)], -1) for k in range(3)])
        for k in range(3):
            asked = blocks[k][blocks[k] >= 0]
            assert len(set(asked.tolist())) == len(asked) and (asked < len(local[k])).all()
        np.testing.assert_array_equal(back[inverse].reshape(64, -1), want[:, router.ex_cols])
        np.testing.assert_array_equal(local[r][routed.rep_rows], want[:, router.rep_cols])
        assert (blocks >= 0).sum() == len(np.unique(want[:, router.ex_cols]))


def test_the_rebalance_turns_the_biggest_table_wise_tables_row_wise_by_hand():
    """3 ranks, batch 1, tables of 50, 45, 40 and 5 rows (worked out by hand). A rank's share of the exchanged rows is
    140 / 3 = 46.7, so only the 50-row table starts row-wise; the others are placed biggest first: 45 -> rank 0,
    40 -> rank 1, 5 -> rank 2, giving ranks 16+45, 17+40, 17+5 = 61, 57, 22 rows. 61 > 1.1 x 46.7 = 51.3, so the 45-row
    table turns row-wise (15 rows each): 40 -> rank 0, 5 -> rank 1, giving 71, 37, 32; still over, so the 40-row table
    turns row-wise (13, 13, 14): 5 -> rank 0, giving 49, 45, 46, within 1.1 x the mean."""
    p = make_plan(spec_of([50, 45, 40, 5]), 3, ["auto"], 1)
    assert p.kinds == ("row", "row", "row", "table") and p.owners == (-1, -1, -1, 0)
    assert p.rows_per_rank().tolist() == [49, 45, 46]
    unbalanced = make_plan(spec_of([50, 45, 40, 5]), 3, ["row", "table", "table", "table"], 1)   # pinned kinds: no rebalance
    assert unbalanced.owners == (-1, 0, 1, 2) and unbalanced.rows_per_rank().tolist() == [61, 57, 22]


def _simulate_alltoall(blocks_per_rank, n):
    """The AllGather-round all-to-all of collectives.AllToAll in numpy: x [N*C, ...] per rank -> what each rank gets."""
    from src.training.collectives import round_targets, source_rounds
    c = len(blocks_per_rank[0]) // n
    gathered = []                                    # round j: every rank's block for its round-j target
    for j in range(1, n):
        gathered.append(np.concatenate([x[t * c:(t + 1) * c] for x, t in
                                        ((blocks_per_rank[r], round_targets(r, n)[j - 1]) for r in range(n))]))
    out = []
    for rank in range(n):
        parts = []
        for src, j in enumerate(source_rounds(rank, n)):
            parts.append(blocks_per_rank[rank][rank * c:(rank + 1) * c] if j == 0 else gathered[j - 1][src * c:(src + 1) * c])
        out.append(np.concatenate(parts))
    return out


@pytest.mark.parametrize("n", range(2, 9))
def test_the_exchange_routes_every_lookup_to_its_owner_and_every_gradient_back(n):
    """N ranks route random batches (repeated rows included) under a mixed plan; the AllGather rounds are simulated in
    numpy with the cell's own round schedule. Every distinct row a rank asks for reaches the rank that holds it, at
    that rank's local index, exactly once; the vectors coming back put every lookup's own row in its place; and the
    gradients sent back add up, on each owner, to the row gradients one process would compute."""
    rng = np.random.default_rng(n)
    sizes = [int(s) for s in rng.integers(2, 400, 12)]
    entries = ["row", "table", "replicated", "auto"] * 3
    plan = make_plan(spec_of(sizes), n, entries, 8)
    local = [np.concatenate([np.arange(lo, hi) for lo, hi in plan.segments(k)]) for k in range(n)]   # global rows
    routers = [Router(plan, r) for r in range(n)]
    ids = [np.stack([rng.integers(0, s, 8) for s in sizes], 1).astype(np.int32) for _ in range(n)]
    for x in ids:
        x[:, 0] = x[0, 0]                                              # one row asked 8 times by every rank
    routed = [routers[r].route(ids[r]) for r in range(n)]
    cap = routers[0].capacity(max(x.need for x in routed), 8)
    packed = [routers[r].pack(routed[r], cap) for r in range(n)]
    recv = _simulate_alltoall([send for send, _ in packed], n)
    offsets = plan.offsets
    want_grad = np.zeros(sum(sizes))
    got_grad = np.zeros(sum(sizes))
    for r in range(n):
        ex = routers[r].ex_cols
        asked = ids[r][:, ex] + offsets[ex]                           # global rows of this rank's exchanged lookups
        for owner in range(n):
            block = packed[r][0].reshape(n, cap)[owner]
            arrived = recv[owner].reshape(n, cap)[r]                    # what the owner got from rank r
            np.testing.assert_array_equal(arrived, block)
            real = arrived[arrived >= 0]
            assert len(set(real.tolist())) == len(real) and (real < len(local[owner])).all()
            assert set(local[owner][real].tolist()) == {g for g in np.unique(asked) if owner ==
                                                        routers[r].seg_owner[np.searchsorted(routers[r].seg_start, g, "right") - 1]}
        # vectors back: each owner sends the global row of every row asked of it; `inverse` puts them in place
        vectors = [np.where(recv[o] >= 0, local[o][np.maximum(recv[o], 0)], -1) for o in range(n)]
        back = _simulate_alltoall(vectors, n)[r]
        np.testing.assert_array_equal(back[packed[r][1]].reshape(8, len(ex)), asked)
        np.testing.assert_array_equal(local[r][routed[r].rep_rows], ids[r][:, routers[r].rep_cols] +
                                      offsets[routers[r].rep_cols])
        # gradients back: a weight per lookup, summed per distinct row asked (as the train step does), sent to owners
        g = rng.normal(size=asked.size)
        np.add.at(want_grad, asked.reshape(-1), g)
        g_asked = np.zeros(n * cap)
        np.add.at(g_asked, packed[r][1], g)
        for owner, (rows, grads) in enumerate(zip(recv, _simulate_alltoall(
                [g_asked if k == r else np.zeros(n * cap) for k in range(n)], n))):
            np.add.at(got_grad, local[owner][rows[rows >= 0]], grads[rows >= 0])
    exchanged = np.concatenate([np.arange(offsets[t], offsets[t] + sizes[t]) for t in routers[0].ex_cols])
    np.testing.assert_allclose(got_grad[exchanged], want_grad[exchanged], atol=1e-12)


def test_round_schedule_pairs_each_sender_with_its_receiver():
    """In round j rank r sends its block for (r + j) mod N, and rank t reads the block of source s from round
    (t - s) mod N: the two agree for every N (at N = 2 a sign error would go unseen, so N runs to 8)."""
    from src.training.collectives import round_targets, source_rounds
    for n in range(2, 9):
        for s in range(n):
            for t in range(n):
                j = source_rounds(t, n)[s]
                assert (j == 0) == (s == t) and (j == 0 or round_targets(s, n)[j - 1] == t)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_multi_hot_lists_route_each_id_to_its_owner_and_back(n):
    """Multi-hot slots (tags: 4 ids a sample, genres: 3, -1 pads) under every kind of placement: through the simulated
    all-to-all every ids column gets back the row of its id (a pad: its slot's row 0), the replicated columns read
    their local rows, and the ids that pool the rows are handed on unchanged."""
    from fixtures.specs import multi_hot_batch, multi_hot_spec
    spec = multi_hot_spec()
    plan = make_plan(spec, n, ["replicated", "table", "row", "row" if n > 2 else "table:1"], 8)
    local = [np.concatenate([np.arange(lo, hi) for lo, hi in plan.segments(k)]) for k in range(n)]   # global rows
    routers = [Router(plan, r) for r in range(n)]
    rng = np.random.default_rng(n)
    ids = [multi_hot_batch(rng, 8)[0] for _ in range(n)]
    routed = [routers[r].route(ids[r]) for r in range(n)]
    cap = routers[0].capacity(max(x.need for x in routed), 8)
    packed = [routers[r].pack(routed[r], cap) for r in range(n)]
    recv = _simulate_alltoall([send for send, _ in packed], n)
    vectors = [np.where(recv[o] >= 0, local[o][np.maximum(recv[o], 0)], -1) for o in range(n)]
    back = _simulate_alltoall(vectors, n)
    offsets = np.asarray(spec.lookup_offsets)
    for r in range(n):
        want = np.maximum(ids[r], 0) + offsets[None, :]                 # [8, 9] global rows, a pad -> row 0
        ex, rep = routers[r].ex_cols, routers[r].rep_cols
        assert sorted(ex + rep) == list(range(spec.lookups)) and len(rep) == 1          # C1 replicated
        np.testing.assert_array_equal(back[r][packed[r][1]].reshape(8, len(ex)), want[:, ex])
        np.testing.assert_array_equal(local[r][routed[r].rep_rows], want[:, rep])
        np.testing.assert_array_equal(routed[r].ids, ids[r])
        assert (ids[r] == -1).any()
