"""A model bundle: a trained model and the transform fitted in training, in one folder that is enough on its own to
turn raw rows into click probabilities (predict.py, serve.py). Written by `export.py --bundle_path=DIR`, atomically
(a temporary folder, then renamed into place); scoring never opens the dataset or the checkpoint.

    DIR/manifest.json    kind "dlrm-bundle", format_version, created, the creating command, the runtime, the model's
                         record (its DLRMSpec, checkpoint, step, training run, dataset fingerprints: model_record.py),
                         the training click rate, and every other file's bytes and SHA-256
    DIR/model.mindir     the probability head for MindSpore (runtime.py; above 1 GB: model_graph.mindir +
                         model_variables/), probabilities equal to eval.py's
    DIR/model.onnx       the same with a dynamic batch for onnxruntime (the default runtime: about 2x MindSpore's rate,
                         within 1e-6 of its probabilities; not there when the model is over ONNX's 2 GB)
    DIR/transform.json   the fitted transform (src/data/transform.py): feature spec, id mode, hashing range or
    DIR/vocab.npz        vocabulary (each slot's keys in id order), table sizes, dense transform, multi-hot layout
    DIR/spec.json        the model's DLRMSpec

Every file's checksum is checked when the bundle is opened: a bundle whose file changed is refused in one line
naming the file.
"""
import datetime
import json
import os
import shlex
import sys
from typing import Callable, Dict, Union

from src.data.packed_format import file_record
from src.data.transform import FittedTransform
from src.inference.model_record import BUNDLE_MANIFEST, ModelRecordError, make_record
from src.inference.runtime import (MINDIR_STEM, ONNX_FILE, RUNTIMES, MindSporeModel, OnnxModel, mindir_file,
                                   open_model)
from src.model_utils.spec import DLRMSpec
from src.utils.staged_dir import has_file, staged_dir

KIND, FORMAT_VERSION = "dlrm-bundle", 1
SPEC_FILE = "spec.json"


class BundleError(ModelRecordError):
    """A model bundle that cannot be used; the message names the folder or file."""


CHECK_ROWS = 2048           # test-split samples the ONNX graph is checked on against the MindSpore network


def check_rows(dataset_path: str) -> list:
    """The first CHECK_ROWS samples of the dataset's test split: [ids int32 [n, L], dense float32 [n, Dn]]."""
    from src.data.reader import PackedBatches
    ids, dense, _ = next(iter(PackedBatches(dataset_path, "test", CHECK_ROWS)))
    return [ids, dense]


def _write_models(prob_net, folder: str, rows: list, log: Callable[[str], None]) -> Dict[str, str]:
    """The model in `folder` for each runtime it can have: MindSpore's MINDIR always (model.mindir, or above
    MindSpore's 1 GB budget model_graph.mindir + model_variables/), and ONNX with a dynamic batch when it fits ONNX's
    2 GB and agrees with the network on `rows` (check_rows). Returns {runtime: model file}."""
    import mindspore as ms
    from mindspore import Tensor
    from src.inference.export import ONNX_LIMIT
    from src.inference.onnx_dynamic import DynamicBatchError, export_dynamic_onnx
    from src.model.cpu_kernels.ops import stock_ops
    from src.model.serving import IdsOnly
    spec = prob_net.spec
    head = prob_net if spec.dense_dim else IdsOnly(prob_net)
    inputs = [Tensor(shape=[None, spec.lookups], dtype=ms.int32)]
    if spec.dense_dim:
        inputs.append(Tensor(shape=[None, spec.dense_dim], dtype=ms.float32))
    with stock_ops(head):
        ms.export(head, *inputs, file_name=os.path.join(folder, MINDIR_STEM), file_format="MINDIR")
    files = {"mindspore": mindir_file(folder)}
    size = sum(p.nbytes for p in prob_net.get_parameters())
    if size > ONNX_LIMIT:
        log(f"bundle: MINDIR only ({size / 2 ** 30:.2f} GB of parameters, over ONNX's 2 GB)")
        return files
    try:
        worst = export_dynamic_onnx(head, spec, os.path.join(folder, ONNX_FILE),
                                    lambda x: head(*[Tensor(a) for a in x]).asnumpy(), rows)
    except DynamicBatchError as exc:
        log(f"bundle: MINDIR only (the ONNX graph: {exc})")
        return files
    log(f"bundle: MINDIR, and ONNX with a dynamic batch, within {worst:.1e} of the MindSpore network on "
        f"{len(rows[0])} test samples (batches of 1, 3, 17 and {len(rows[0])} rows)")
    return {"onnxruntime": ONNX_FILE, **files}


def _checksums(folder: str) -> Dict[str, dict]:
    """{relative path: {bytes, sha256}} of every file under folder but the manifest and the staging lock."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), folder)
            if rel not in (BUNDLE_MANIFEST, ".lock"):
                out[rel] = file_record(os.path.join(root, name))
    return dict(sorted(out.items()))


def write_bundle(prob_net, bundle_path: str, source: dict, dataset_path: str, meta: dict,
                 log: Callable[[str], None] = print) -> dict:
    """Write the bundle of `prob_net` (a DLRMProbability; `source` = {checkpoint, step, model}) and the transform that
    made the dataset at `dataset_path` (metadata `meta`) to bundle_path, whole or not at all; returns the manifest."""
    with staged_dir(bundle_path, has_file(BUNDLE_MANIFEST), "the model bundle") as tmp:
        models = _write_models(prob_net, tmp, check_rows(dataset_path), log)
        FittedTransform.from_dataset(dataset_path, meta).save(tmp)
        with open(os.path.join(tmp, SPEC_FILE), "w", encoding="utf-8") as f:
            json.dump(prob_net.spec.to_json(), f, indent=1)
        with open(os.path.join(dataset_path, "stats.json"), encoding="utf-8") as f:
            train_ctr = float(json.load(f)["positive_rate"])
        default = next(iter(models))                  # onnxruntime when the bundle has it
        manifest = {"kind": KIND, "format_version": FORMAT_VERSION,
                    "created": datetime.datetime.now().isoformat(timespec="seconds"),
                    "command": shlex.join([os.path.basename(sys.executable)] + sys.argv),
                    "models": models, "runtime": default, "train_ctr": train_ctr,
                    "record": make_record(models[default], "ONNX" if default == "onnxruntime" else "MINDIR", None,
                                          "float32", **source),
                    "files": _checksums(tmp)}
        with open(os.path.join(tmp, BUNDLE_MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        _readable(tmp)
    return manifest


def _readable(folder: str) -> None:
    """Folders rwxr-xr-x and files rw-r--r-- (less the umask): a temporary folder is private and MindSpore writes
    its exports read-only for their owner, but a bundle is deployed, read by a serving user."""
    mask = os.umask(0)
    os.umask(mask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o755 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644 & ~mask)


class Bundle:
    """An opened bundle: its manifest, spec and fitted transform, every file's checksum checked (BundleError naming
    the file otherwise). `model(threads)` loads the model on the bundle's runtime."""

    def __init__(self, path: str, verify: bool = True):
        self.path = path
        manifest_path = os.path.join(path, BUNDLE_MANIFEST)
        if not os.path.isfile(manifest_path):
            raise BundleError(f"'{path}' is not a model bundle (no {BUNDLE_MANIFEST}): write one with "
                              f"`python export.py --checkpoint_path=CK --dataset_path=DS --bundle_path={path}`")
        try:
            with open(manifest_path, encoding="utf-8") as f:
                self.manifest = json.load(f)
        except ValueError as exc:
            raise BundleError(f"'{manifest_path}' is not JSON ({exc})") from None
        if self.manifest.get("kind") != KIND or self.manifest.get("format_version") != FORMAT_VERSION or \
                self.manifest.get("runtime") not in RUNTIMES or not isinstance(self.manifest.get("models"), dict):
            raise BundleError(f"'{manifest_path}' is not a {KIND} of format {FORMAT_VERSION} (kind "
                              f"{self.manifest.get('kind')!r}, format {self.manifest.get('format_version')!r})")
        if verify:
            self.verify()
        self.spec = DLRMSpec.from_json(self.manifest["record"]["model"]["spec"])
        self.transform = FittedTransform.load(path)

    def verify(self) -> None:
        """Every file the manifest lists has its recorded size and SHA-256 (BundleError naming the first that does
        not), and no file is missing."""
        for rel, want in self.manifest["files"].items():
            full = os.path.join(self.path, rel)
            if not os.path.isfile(full):
                raise BundleError(f"bundle file '{full}' is missing: the bundle is incomplete; export it again")
            if os.path.getsize(full) != want["bytes"] or file_record(full)["sha256"] != want["sha256"]:
                raise BundleError(f"bundle file '{full}' fails its checksum: it changed after the bundle was written; "
                                  f"export the bundle again")

    @property
    def runtime(self) -> str:
        """The default runtime: onnxruntime when the bundle holds an ONNX graph, else mindspore."""
        return self.manifest["runtime"]

    def pick(self, runtime: str = "auto") -> str:
        """The runtime to score with: `runtime`, or the default for auto; BundleError when the bundle lacks it."""
        chosen = self.runtime if runtime == "auto" else runtime
        if chosen not in self.manifest["models"]:
            raise BundleError(f"bundle {self.path} holds no model for runtime {chosen} (it has "
                              f"{sorted(self.manifest['models'])})")
        return chosen

    @property
    def train_ctr(self) -> float:
        """The click rate of the training split (normalized entropy's baseline)."""
        return float(self.manifest["train_ctr"])

    def model(self, threads: int = 0, runtime: str = "auto") -> Union[OnnxModel, MindSporeModel]:
        """The model on `runtime` (auto: the bundle's default; runtime.open_model)."""
        chosen = self.pick(runtime)
        return open_model(os.path.join(self.path, self.manifest["models"][chosen]), chosen, threads)

    def describe(self, runtime: str = "auto") -> str:
        """One line: the model, where it came from, the runtime that scores it."""
        rec = self.manifest["record"]
        return (f"bundle {self.path}: {self.spec.slots} tables, {self.spec.lookups} ids and {self.spec.dense_dim} dense "
                f"values a sample, from {rec['checkpoint']} (step {rec['step']}), runtime {self.pick(runtime)}")
