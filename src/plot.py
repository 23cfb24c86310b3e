"""`python -m src.plot ...`: the earlier name of `python -m src.tools.plot` (loss/AUC plot), kept so
that documented commands keep working."""
from src.tools.plot import main

if __name__ == "__main__":
    main()
