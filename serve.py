"""Serve a model bundle over HTTP: raw rows in, click probabilities out, with the transform fitted in training.

    python serve.py --model_path=BUNDLE [--port=8000] [--host=127.0.0.1] [--max_batch_rows=4096] [--max_wait_ms=2]
        [--max_queue_rows=65536] [--max_body_bytes=8388608] [--runtime=auto|onnxruntime|mindspore]

    curl -s localhost:8000/predict -d '{"lines": ["\\t1\\t5\\t..."]}'        # the training files' own format
    curl -s localhost:8000/predict -d '{"rows": [{"I1": 1, "C1": "68fd1e64", ...}]}'   # by column name

POST /predict answers {"probabilities": [...]} (400 naming the first problem of a bad request, 503 when the queue is
full); GET /health and GET /metadata (features, model checksum, creating command). Concurrent requests are scored in
micro-batches. SIGTERM lets the requests in flight finish, then exits 0. Details: docs/serving.md.
"""
import os

from src.model_utils.config import get_config

config = get_config(description=__doc__)


def main():
    from src.data.transform import TransformError
    from src.inference.bundle import Bundle, BundleError
    from src.inference.server import serve, settings_from
    from src.utils.cli import fail, run_or_exit
    if not config.model_path:
        fail("serve", ValueError("give --model_path=BUNDLE (a folder written by export.py --bundle_path)"), 2)
    bundle = run_or_exit("serve", lambda: Bundle(config.model_path), (BundleError, TransformError), code=2)
    print(run_or_exit("serve", lambda: bundle.describe(config.runtime), (BundleError,), code=2), flush=True)
    run_or_exit("serve", lambda: serve(bundle, settings_from(config), log=lambda line: print(line, flush=True)),
                (OSError,), code=2)


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    main()
