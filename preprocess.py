"""Write the test split as raw batch files for batch inference (ascend310_infer or src/inference/runner.py).

    python preprocess.py --dataset_path=DIR/mindrecord --infer_data_path=./preprocess_Result \
        [--model_path=dlrm.onnx] [--test_batch_size=16384] [--config_path=...]

Output (see src/inference/batch_files.py): 00_ids/ int32 [b, L], 01_dense/ float32 [b, Dn], label/ float32 [b, 1],
one little-endian .bin per batch named batch_000000.bin, ...; b = test_batch_size except the last batch (Criteo:
L = 26, Dn = 13). With --model_path (an export.py model), a model that does not fit the dataset is refused in one
line, exit code 2, and nothing is written. (Turning Criteo text into MindRecord is src/preprocess_data.py's job, run
by scripts/run_main.sh.)
"""
from src.model_utils.config import get_config

config = get_config(description=__doc__)


def write() -> dict:
    """Check the model (when given) against the dataset, then write the test split's batch files."""
    from src.data.packed_format import ids_per_sample, load_metadata
    from src.data.reader import PackedBatches
    from src.inference.batch_files import write_batches
    from src.inference.model_record import check_model_fits
    from src.utils.progress import Progress
    if config.model_path:
        check_model_fits(config.model_path, config.dataset_path)
    meta = load_metadata(config.dataset_path)
    batches = PackedBatches(config.dataset_path, "test", config.test_batch_size)
    prog = Progress("batch files", batches.samples, "samples")
    return write_batches(batches, config.infer_data_path, ids_per_sample(meta), meta["dense_dim"],
                         config.test_batch_size, prog)


def main():
    from src.data.packed_format import DatasetError
    from src.training.checkpoint import CheckpointError
    from src.utils.cli import run_or_exit
    from src.utils.staged_dir import OutputError
    manifest = run_or_exit("preprocess", write, (DatasetError, CheckpointError, OutputError, OSError))
    print(f"wrote {manifest['batches']} batches ({manifest['samples']} samples, batch {config.test_batch_size}) "
          f"to {config.infer_data_path}")


if __name__ == "__main__":
    main()
