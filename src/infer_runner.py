"""`python -m src.infer_runner ...`: the earlier name of `python -m src.inference.runner` (the Python
batch-inference runner), kept so that documented commands keep working."""
from src.inference.runner import main

if __name__ == "__main__":
    main()
