"""Dead ReLU units while a recipe trains: the evidence behind docs/benchmarks.md, "The seed-123 collapse".

    python -m src.tools.dead_units --dataset_path=DIR/mindrecord --steps=1,10,200 [--key=value ...]

Trains with cpu_config.yaml and the --key=value options, and after each number of steps in --steps prints, per MLP
layer with a ReLU, the share of its units that output 0 for every one of the first 8,192 test samples (such a unit
gets no gradient again). `bottom3` is the bottom MLP's last layer: the dense vector the interaction sees. Then the
test AUC. One JSON line each.
"""
import argparse
import json
import sys
from typing import Dict, List

import numpy as np

SAMPLES = 8192


def dead_shares(net, ids: np.ndarray, dense: np.ndarray) -> Dict[str, float]:
    """{layer name: share of its ReLU units at 0 for all samples} for the bottom MLP (bottom0..) and the top MLP
    (top0.., not the logit), from the network's current weights; ids int32 [N, L], dense float32 [N, Dn]."""
    from mindspore import Tensor
    x = net.dense_arch(Tensor(dense))
    z = net.interaction(x, net.sparse_arch(Tensor(ids))).asnumpy()
    out = {}
    for name, mlp, h in (("bottom", net.dense_arch.mlp, dense), ("top", net.over_arch.mlp, z)):
        layers = [c for c in mlp.cells() if hasattr(c, "weight")]
        if name == "top":
            layers = layers[:-1]                                   # the logit has no ReLU
        for i, layer in enumerate(layers):
            h = np.maximum(h @ layer.weight.asnumpy().T + layer.bias.asnumpy(), 0)
            out[f"{name}{i}"] = round(float((h.max(0) == 0).mean()), 3)
    return out


def main(argv: List[str] = None) -> None:
    """Parse --steps and the config options, train, print the shares after each step count and the AUC."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Any other --key=value is a train.py config option.")
    ap.add_argument("--steps", default="1,10,200", help="comma-separated step counts to measure after")
    args, options = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    from src.data.reader import PackedBatches
    from src.model_utils.config import parse_cli
    from src.training.evaluation import evaluate
    from src.training.trainer import Trainer
    from src.utils.runtime import setup_context
    cfg = parse_cli(["--save_checkpoint=False", "--do_eval=False", "--loss_file_name=",
                     "--log_interval_steps=1000000", *options])
    setup_context(cfg.device_target, None)
    tr = Trainer(cfg, log=lambda *_: None)
    ids, dense, _ = next(iter(PackedBatches(cfg.dataset_path, "test", SAMPLES)))
    for steps in (int(s) for s in args.steps.split(",")):
        tr.run(max_steps=steps)
        print(json.dumps({"step": steps, "dead": dead_shares(tr.net, ids, dense)}), flush=True)
    ev = evaluate(tr.prob_net, cfg.dataset_path, "test", cfg.test_batch_size)
    print(json.dumps({"random_seed": cfg.random_seed, "auc": ev["auc"], "logloss": ev["logloss"]}))


if __name__ == "__main__":
    main()
