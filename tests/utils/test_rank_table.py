"""The Ascend launcher's placement of this server's devices from an HCCL rank table."""
import pytest

from fixtures.paths import RANK_TABLE
from src.utils.rank_table import RankTableError, placement


def test_rank_table_places_this_servers_devices_with_global_ranks():
    assert placement(RANK_TABLE, "t.json", 2, "10.0.0.2") == (4, [(0, 2), (1, 3)])
    assert placement({}, "t.json", 3) == (3, [(0, 0), (1, 1), (2, 2)])        # a placeholder table
    with pytest.raises(RankTableError, match="this server has 2 devices in the table, but DEVICE_NUM is 8"):
        placement(RANK_TABLE, "t.json", 8, "10.0.0.1")
    with pytest.raises(RankTableError, match="match this machine's addresses .* set SERVER_ID"):
        placement(RANK_TABLE, "t.json", 2)
