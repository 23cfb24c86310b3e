"""The checkpoint command line:

    python -m src.training.checkpoint merge CKPT_DIR [--prefix dlrm] [--step N]
"""
from typing import List, Optional

from src.training.checkpoint.file_format import CheckpointError
from src.training.checkpoint.shards import merge


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.training.checkpoint merge CKPT_DIR [--prefix dlrm] [--step N]`"""
    import argparse
    import sys
    p = argparse.ArgumentParser(prog="python -m src.training.checkpoint",
                                description="Merge hybrid-parallel shards (CKPT_DIR/rank_*/) into one "
                                            "single-device checkpoint in CKPT_DIR")
    p.add_argument("command", choices=["merge"])
    p.add_argument("ckpt_dir")
    p.add_argument("--prefix", default="dlrm")
    p.add_argument("--step", type=int, default=None, help="global step to merge (default: the newest complete set)")
    args = p.parse_args(argv)
    try:
        print(merge(args.ckpt_dir, args.prefix, args.step))
    except CheckpointError as exc:
        sys.stderr.write(f"merge error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
