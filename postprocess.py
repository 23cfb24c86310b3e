"""Accuracy, AUC, logloss, normalized entropy and calibration of batch-inference results against preprocess.py's labels
(NE against the training click rate of dataset_path's stats.json when it has one, else the labels' own rate).

    python postprocess.py --result_path=./result_Files --label_path=./preprocess_Result/label \
        [--model_path=dlrm.onnx --dataset_path=DIR/mindrecord]

With --model_path, a model that does not fit dataset_path is refused in one line, exit code 2, before any scoring.
"""
from src.model_utils.config import get_config

config = get_config(description=__doc__)


def score() -> dict:
    """Check the model (when given) against the dataset, then score the results against the labels."""
    from src.inference.batch_files import read_results
    from src.inference.model_record import check_model_fits
    from src.training.evaluation import train_click_rate
    from src.training.metrics import ctr_metrics
    if config.model_path:
        check_model_fits(config.model_path, config.dataset_path)
    prob, label = read_results(config.result_path, config.label_path)
    return ctr_metrics(prob, label, train_click_rate(config.dataset_path))


def main():
    from src.data.packed_format import DatasetError
    from src.inference.batch_files import InferFilesError
    from src.training.checkpoint import CheckpointError
    from src.utils.cli import run_or_exit
    from src.training.logs import format_metrics
    r = run_or_exit("postprocess", score, (InferFilesError, DatasetError, CheckpointError))
    print(format_metrics(r))


if __name__ == "__main__":
    main()
