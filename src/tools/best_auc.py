"""Best achievable test AUC of a synthetic dataset (from the generator's true click probabilities),
printed next to a model's AUC from an eval log.

    python -m src.tools.best_auc --dataset_path DIR/mindrecord --prob_file DIR/train_prob.npy [--eval_file eval.log]
"""
import argparse

import numpy as np

from src.data.packed_format import load_metadata
from src.data.reader import PackedBatches
from src.training.logs import read_eval_log
from src.training.metrics import ctr_metrics


def best_test_metrics(dataset_path, prob_file):
    meta = load_metadata(dataset_path)
    if meta["bad_lines"]["total"]:
        raise ValueError("the dataset skipped bad lines; true probabilities no longer align with its samples")
    prob = np.load(prob_file)
    if len(prob) != meta["lines"]["total"]:
        raise ValueError(f"'{prob_file}' has {len(prob)} probabilities, the dataset was made from "
                         f"{meta['lines']['total']} lines")
    labels = np.concatenate([b[2].reshape(-1) for b in PackedBatches(dataset_path, "test", 1 << 16)])
    return ctr_metrics(prob[-len(labels):], labels)


def main(argv=None):
    ap = argparse.ArgumentParser(description="best achievable AUC of synthetic data")
    ap.add_argument("--dataset_path", required=True)
    ap.add_argument("--prob_file", required=True)
    ap.add_argument("--eval_file", default=None)
    args = ap.parse_args(argv)
    best = best_test_metrics(args.dataset_path, args.prob_file)
    text = f"best achievable (true probabilities): auc {best['auc']:.4f}, logloss {best['logloss']:.4f}"
    if args.eval_file:
        rows = [r for r in read_eval_log(args.eval_file) if r["split"] == "test"]
        if rows:
            r = rows[-1]
            text = (f"model: accuracy {r['accuracy']:.4f}, auc {r['auc']:.4f}, logloss {r['logloss']:.4f} | "
                    + text + f" | AUC gap {best['auc'] - r['auc']:.4f}")
    print(text)


if __name__ == "__main__":
    main()
