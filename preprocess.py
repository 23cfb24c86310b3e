"""Write the test split as raw batch files for batch inference (ascend310_infer or src/inference/runner.py).

    python preprocess.py --dataset_path=DIR/mindrecord --infer_data_path=./preprocess_Result \
        [--test_batch_size=16384] [--config_path=...]

Output (see src/inference/batch_files.py): 00_ids/ int32 [b, 26], 01_dense/ float32 [b, 13], label/ float32 [b, 1],
one little-endian .bin per batch named batch_000000.bin, ...; b = test_batch_size except the last batch.
(Turning Criteo text into MindRecord is src/preprocess_data.py's job, run by scripts/run_main.sh.)
"""
import sys

from src.model_utils.config import get_config

config = get_config(description=__doc__)


def main():
    from src.data.packed_format import DatasetError, ids_per_sample, load_metadata
    from src.data.reader import PackedBatches
    from src.inference.batch_files import write_batches
    from src.utils.progress import Progress
    from src.utils.staged_dir import OutputError
    try:
        meta = load_metadata(config.dataset_path)
        batches = PackedBatches(config.dataset_path, "test", config.test_batch_size)
        prog = Progress("batch files", batches.samples, "samples")
        manifest = write_batches(batches, config.infer_data_path, ids_per_sample(meta), meta["dense_dim"],
                                 config.test_batch_size, prog)
    except (DatasetError, OutputError, OSError) as exc:
        sys.stderr.write(f"preprocess error: {exc}\n")
        sys.exit(1)
    print(f"wrote {manifest['batches']} batches ({manifest['samples']} samples, batch {config.test_batch_size}) "
          f"to {config.infer_data_path}")


if __name__ == "__main__":
    main()
