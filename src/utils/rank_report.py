"""Per-rank result files: how a distributed launcher knows that a job succeeded.

A launcher sets DLRM_RESULT_DIR (a folder of its own, emptied of earlier reports before it starts the ranks).
Each rank writes DLRM_RESULT_DIR/rank_<k>.json as its very last act, after everything it had to write
(checkpoint shards, the merged checkpoint on rank 0, logs): {"rank", "status": "ok" | "error", "message",
"pid", ...}, written whole or not at all. The job succeeded when every rank reported "ok", whatever the
launcher's process manager (msrun) says afterwards about MindSpore's teardown; a rank that failed or never
reported fails the job.

    python -m src.utils.rank_report check DIR NUM [--first K]   # exit 0: ranks K .. K+NUM-1 all reported ok
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional

ENV = "DLRM_RESULT_DIR"


def report_path(folder: str, rank: int) -> str:
    """DIR/rank_<k>.json."""
    return os.path.join(folder, f"rank_{rank}.json")


def env_rank() -> Optional[int]:
    """This process's rank as its launcher set it (RANK_ID from msrun or the rank table, MS_NODE_ID from the
    multi-node start), before communication is up; None when neither is set."""
    for name in ("RANK_ID", "MS_NODE_ID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


def report(status: str, rank: Optional[int] = None, **info: object) -> None:
    """Write this rank's result file (when a launcher asked for one): status "ok" or "error" plus `info`."""
    folder = os.environ.get(ENV)
    rank = env_rank() if rank is None else rank
    if not folder or rank is None:
        return
    os.makedirs(folder, exist_ok=True)
    tmp = report_path(folder, rank) + f".tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"rank": rank, "status": status, "pid": os.getpid(), **info}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, report_path(folder, rank))


def read_reports(folder: str, ranks: List[int]) -> Dict[int, Optional[dict]]:
    """{rank: its report, or None when it wrote none}."""
    out = {}
    for r in ranks:
        try:
            with open(report_path(folder, r), encoding="utf-8") as f:
                out[r] = json.load(f)
        except (OSError, ValueError):
            out[r] = None
    return out


def summary(reports: Dict[int, Optional[dict]]) -> List[str]:
    """One line per rank that did not report ok (empty: the job succeeded)."""
    lines = []
    for r, rep in sorted(reports.items()):
        if rep is None:
            lines.append(f"rank {r} never reported a result (it died or was killed before its end)")
        elif rep.get("status") != "ok":
            lines.append(f"rank {r} failed: {rep.get('message', rep.get('status'))}")
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.utils.rank_report check DIR NUM [--first K]`: print the ranks that did not report ok and
    exit 1, or exit 0 when all of them did."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("command", choices=["check"])
    ap.add_argument("folder")
    ap.add_argument("num", type=int, help="how many ranks this launcher started")
    ap.add_argument("--first", type=int, default=0, help="the first of them (a node's ranks start at K)")
    args = ap.parse_args(argv)
    problems = summary(read_reports(args.folder, list(range(args.first, args.first + args.num))))
    for line in problems:
        print(line)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
