"""`python -m src.best_auc ...`: the earlier name of `python -m src.tools.best_auc` (best achievable
AUC of synthetic data), kept so that documented commands keep working."""
from src.tools.best_auc import main

if __name__ == "__main__":
    main()
