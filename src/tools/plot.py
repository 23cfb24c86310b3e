"""Plot training loss and test AUC against step from loss.log and eval.log into a PNG.

    python -m src.tools.plot --loss_file loss.log --eval_file eval.log --out training.png
"""
import argparse
import os
import sys

from src.training.logs import read_eval_log, read_loss_log


def plot(loss_file, eval_file, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    losses = read_loss_log(loss_file)
    if not losses:
        raise ValueError(f"'{loss_file}' has no 'epoch: E, step: S, loss is L' lines")
    evals = read_eval_log(eval_file) if eval_file and os.path.exists(eval_file) else []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r[1] for r in losses], [r[2] for r in losses], color="tab:blue", lw=1, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (sigmoid cross-entropy)", color="tab:blue")
    if evals:
        ax2 = ax.twinx()
        for split, style, color in (("val", "o-", "tab:red"), ("test", "s", "tab:green")):
            rows = [e for e in evals if e["split"] == split]
            if rows:
                ax2.plot([e["step"] for e in rows], [e["auc"] for e in rows], style, color=color,
                         label=f"{'validation' if split == 'val' else 'test'} AUC")
                ax2.annotate(f"{split} AUC {rows[-1]['auc']:.4f}", (rows[-1]["step"], rows[-1]["auc"]),
                             textcoords="offset points", xytext=(-80, -15 if split == "val" else 10))
        ax2.set_ylabel("AUC (validation: the decisions; test: reported once)", color="tab:red")
        ax2.legend(loc="lower right")
    ax.set_title("DLRM training")
    fig.tight_layout()
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss_file", required=True)
    ap.add_argument("--eval_file", default=None)
    ap.add_argument("--out", default="training.png")
    args = ap.parse_args(argv)
    try:
        print(f"plot: wrote {plot(args.loss_file, args.eval_file, args.out)}")
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"plot error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
