"""`python -m src.checkpoint ...`: the earlier name of `python -m src.training.checkpoint` (merging
hybrid-parallel checkpoint shards), kept so that documented commands keep working."""
from src.training.checkpoint import main

if __name__ == "__main__":
    main()
