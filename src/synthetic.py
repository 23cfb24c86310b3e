"""`python -m src.synthetic ...`: the earlier name of `python -m src.data.synthetic` (synthetic Criteo-
format data), kept so that documented commands keep working."""
from src.data.synthetic import main

if __name__ == "__main__":
    main()
