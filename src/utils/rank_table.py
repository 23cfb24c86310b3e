"""This server's devices in an HCCL rank table (Ascend), for the distributed launcher.

    python -m src.utils.rank_table RANK_TABLE_FILE NUM [SERVER_ID]

prints the job's rank count, then one `device_id rank_id` line per device of this server. The rank
table (HCCL format 1.0, as `hccl_tools.py` writes it) lists every server of the job:
  {"server_count": "2", "server_list": [{"server_id": "10.0.0.1", "device": [
      {"device_id": "0", "device_ip": "...", "rank_id": "0"}, ...]}, ...]}
This server is the one whose server_id is SERVER_ID, or one of this machine's addresses; with a single
server it is that one. A table without server_list (a placeholder) gives devices 0..NUM-1 as ranks
0..NUM-1. Errors name the file and what is wrong, and exit 2.
"""
import argparse
import json
import socket
import sys
from typing import List, Optional, Sequence, Tuple


class RankTableError(ValueError):
    """The rank table cannot place this server's devices; the message names the file."""


def _local_addresses() -> set:
    names = {socket.gethostname(), socket.getfqdn()}
    addresses = set(names)
    for name in names:
        try:
            addresses.update(socket.gethostbyname_ex(name)[2])
        except OSError:
            pass
    return addresses


def this_server(table: dict, path: str, server_id: Optional[str]) -> dict:
    """The server_list entry of this machine (by server_id, by address, or the only one)."""
    servers = table.get("server_list") or []
    if server_id:
        found = [s for s in servers if str(s.get("server_id")) == server_id]
        if not found:
            raise RankTableError(f"{path}: no server with server_id {server_id!r} (servers: "
                                 f"{[s.get('server_id') for s in servers]})")
        return found[0]
    if len(servers) == 1:
        return servers[0]
    local = _local_addresses()
    found = [s for s in servers if str(s.get("server_id")) in local]
    if len(found) != 1:
        raise RankTableError(f"{path}: {len(servers)} servers and {len(found)} of them match this machine's "
                             f"addresses {sorted(local)}: set SERVER_ID to this server's server_id")
    return found[0]


def placement(table: dict, path: str, num: int, server_id: Optional[str] = None) -> Tuple[int, List[Tuple[int, int]]]:
    """(ranks in the job, [(device_id, rank_id)] of this server's NUM devices)."""
    if not table.get("server_list"):
        return num, [(i, i) for i in range(num)]
    try:
        total = sum(len(s["device"]) for s in table["server_list"])
        mine = [(int(d["device_id"]), int(d["rank_id"])) for d in this_server(table, path, server_id)["device"]]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RankTableError):
            raise
        raise RankTableError(f"{path}: not an HCCL rank table (server_list[].device[] with device_id and "
                             f"rank_id): {type(exc).__name__} {exc}") from None
    if len(mine) != num:
        raise RankTableError(f"{path}: this server has {len(mine)} devices in the table, but DEVICE_NUM is {num}")
    all_ranks = sorted(int(d["rank_id"]) for s in table["server_list"] for d in s["device"])
    if all_ranks != list(range(total)):
        raise RankTableError(f"{path}: rank_id values must be 0..{total - 1}, each once; found {all_ranks[:8]}...")
    return total, sorted(mine, key=lambda dr: dr[1])


def main(argv: Optional[Sequence[str]] = None) -> None:
    """CLI: print the rank count, then `device_id rank_id` per device of this server."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m src.utils.rank_table")
    ap.add_argument("rank_table_file", help="HCCL rank table (JSON), as hccl_tools.py writes it")
    ap.add_argument("num", type=int, help="devices of this server to start (DEVICE_NUM)")
    ap.add_argument("server_id", nargs="?", default=None, help="this server's server_id in the table (default: "
                    "found by this machine's addresses)")
    args = ap.parse_args(argv)
    path = args.rank_table_file
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        if not isinstance(table, dict):
            raise RankTableError(f"{path}: must hold a JSON object")
        total, mine = placement(table, path, args.num, args.server_id)
    except (OSError, json.JSONDecodeError, RankTableError) as exc:
        sys.stderr.write(f"rank table error: {exc}\n")
        sys.exit(2)
    print(total)
    for device, rank in mine:
        print(device, rank)


if __name__ == "__main__":
    main()
