"""Accuracy, AUC and logloss of batch-inference results against preprocess.py's labels.

    python postprocess.py --result_path=./result_Files --label_path=./preprocess_Result/label
"""
import sys

from src.model_utils.config import get_config

config = get_config(description=__doc__)


def main():
    from src.inference.batch_files import InferFilesError, read_results
    from src.training.metrics import ctr_metrics
    try:
        prob, label = read_results(config.result_path, config.label_path)
    except InferFilesError as exc:
        sys.stderr.write(f"postprocess error: {exc}\n")
        sys.exit(1)
    r = ctr_metrics(prob, label)
    print(f"accuracy: {r['accuracy']:.6f}, auc: {r['auc']:.6f}, logloss: {r['logloss']:.6f}, "
          f"samples: {r['samples']}")


if __name__ == "__main__":
    main()
