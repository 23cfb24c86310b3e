"""Agreeing on the exchange capacity: what each rank announces in a step's AllReduce."""
import numpy as np

from src.training.exchange_feed import ExchangeFeed
from fixtures.specs import spec_of
from src.training.sharding import Router, make_plan
from src.utils.progress import with_next


def test_ranks_agree_on_the_next_capacity_through_the_summed_announcements():
    """What each rank announces in a step's AllReduce, summed, gives every rank the largest next need; a rank
    without a next batch makes the next step agree by itself. with_next pairs each batch with the one after."""
    sizes = [5000, 300, 70000]
    p = make_plan(spec_of(sizes), 3, ["row"] * 3, 32)
    rng = np.random.default_rng(1)
    feeds = [ExchangeFeed(Router(p, r)) for r in range(3)]
    routed = [f.router.route(np.stack([rng.integers(0, n, 32 * (r + 1)) for n in sizes], 1).astype(np.int32))
              for r, f in enumerate(feeds)]
    summed = sum(f.announce(x) for f, x in zip(feeds, routed))
    assert ExchangeFeed.agreed(summed) == max(x.need for x in routed) and max(x.need for x in routed) > 0
    assert ExchangeFeed.agreed(summed - feeds[1].announce(routed[1]) + feeds[1].announce(None)) is None
    assert list(with_next([1, 2, 3])) == [(1, 2), (2, 3), (3, None)] and list(with_next([])) == []
