"""`python -m src.benchmark ...`: the earlier name of `python -m src.tools.benchmark` (benchmarks
behind the README's figures), kept so that documented commands keep working."""
from src.tools.benchmark import main

if __name__ == "__main__":
    main()
