"""Score raw data with a model bundle: every data line of the input -> its click probability, with the transform that
was fitted in training (vocabularies or hashing, dense transform, multi-hot lists).

    python predict.py --model_path=BUNDLE --input_path=FILE_OR_GLOB --output_path=OUT.csv [--key_column=NAME]
        [--strict=1] [--workers=N] [--runtime=auto|onnxruntime|mindspore]

BUNDLE is written by `python export.py --checkpoint_path=CK --dataset_path=DS --bundle_path=BUNDLE`. The input is what
the bundle's feature spec reads (Criteo TSV, your CSV/TSV with or without a header, .gz, globs of day files); the
label column is optional: with it, the summary prints accuracy, AUC, logloss, normalized entropy and calibration.
OUT.csv has a header, then one row per data line in input order: the key column (--key_column), then `probability`;
a bad line keeps its row with an empty probability and is counted by reason (--strict=1 stops at the first, naming
file, line and column). The output is written whole or not at all.
"""
import os

from src.model_utils.config import get_config

config = get_config(description=__doc__)


def output_file() -> str:
    """output_path, or its predictions.csv when it is a folder (the config's default ./output)."""
    path = config.output_path
    return os.path.join(path, "predictions.csv") if os.path.isdir(path) or path.endswith(os.sep) else path


def main():
    from src.data.feature_spec import FeatureSpecError
    from src.data.text_parser import InputFormatError
    from src.data.transform import TransformError
    from src.inference.bundle import Bundle, BundleError
    from src.inference.scoring import ScoringError, score_files
    from src.utils.cli import run_or_exit
    from src.utils.progress import Progress
    if not config.model_path or not config.input_path:
        from src.utils.cli import fail
        fail("predict", ValueError("give --model_path=BUNDLE (export.py --bundle_path) and --input_path=FILE_OR_GLOB"),
             2)
    errors = (BundleError, TransformError, ScoringError, InputFormatError, FeatureSpecError, OSError)
    bundle = run_or_exit("predict", lambda: Bundle(config.model_path), errors, code=2)
    print(run_or_exit("predict", lambda: bundle.describe(config.runtime), errors, code=2), flush=True)
    out = output_file()
    progress = Progress("predict", 0, "bytes", every=10.0)
    summary = run_or_exit("predict", lambda: score_files(bundle, config.input_path, out, config.key_column or None,
                                                         bool(config.strict), config.workers, progress,
                                                         config.runtime),
                            errors, code=2)
    progress.finish()
    for line in summary.text():
        print(line)
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    main()
