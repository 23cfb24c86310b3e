"""Feeds the entry points deliberately bad input and prints what a user sees: the bad-input table of
docs/reliability.md comes from this script, and a test runs it with --check, so the table cannot drift from the code.

    python -m src.tools.bad_inputs [--work DIR] [--check] [--write]

Each case runs the real command in a fresh process on a scratch copy of the real Criteo sample
(tests/data/samples) and records its exit code and the last line it printed to stderr. --check exits 1 when a
case's exit code or message is not the expected one, when it printed a traceback, when an output that must
survive was changed, or when docs/reliability.md does not hold exactly this table; --write puts the table there.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "tests", "data", "samples", "criteo_kaggle_train_head1999.tsv")
AVAZU = os.path.join(ROOT, "tests", "data", "samples", "avazu_sample.csv")
AVAZU_SPEC = os.path.join(ROOT, "examples", "avazu", "avazu.yaml")
DOC = os.path.join(ROOT, "docs", "reliability.md")
BEGIN, END = "<!-- bad-input table: python -m src.tools.bad_inputs --write -->", "<!-- end of the table -->"


@dataclass
class Case:
    what: str                       # the input, as a user would describe it
    args: List[str]                 # the command (python scripts run with this interpreter)
    code: int                       # expected exit code
    expect: str                     # expected fragment of the message
    survives: Optional[str] = None  # a file that must be unchanged afterwards


def run(args: List[str]):
    """(exit code, last line printed to stderr, else to stdout, whether stderr holds a traceback) of `python ARGS`
    run from the repository."""
    r = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, GLOG_v="3"), timeout=600)
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("[")]
    lines = lines or [line for line in r.stdout.splitlines() if line.strip()]
    return r.returncode, lines[-1] if lines else "", "Traceback (most recent call last)" in r.stderr


def _digest(path: str) -> str:
    """SHA-256 over a folder's files (names and contents), to tell whether a command changed it."""
    import hashlib
    h = hashlib.sha256()
    for base, dirs, names in os.walk(path):
        dirs.sort()
        for n in sorted(names):
            with open(os.path.join(base, n), "rb") as f:
                h.update(os.path.relpath(os.path.join(base, n), path).encode() + f.read())
    return h.hexdigest()


def _data_dir(ws: str, name: str, text: bytes, gz: bool = False, with_good_dataset: bool = True) -> str:
    """ws/name/train.txt[.gz] holding `text`; with a good dataset from an earlier run beside it."""
    d = os.path.join(ws, name)
    os.makedirs(d)
    if with_good_dataset:
        shutil.copytree(os.path.join(ws, "good", "mindrecord"), os.path.join(d, "mindrecord"))
    path = os.path.join(d, "train.txt.gz" if gz else "train.txt")
    with open(path, "wb") as f:
        f.write(text)
    return d


def _dataset_copy(ws: str, name: str, change: Callable[[str], None]) -> str:
    """A copy of the good dataset with `change(folder)` applied."""
    d = os.path.join(ws, name)
    shutil.copytree(os.path.join(ws, "good", "mindrecord"), d)
    change(d)
    return d


def _edit_meta(key: str, value) -> Callable[[str], None]:
    def change(d):
        p = os.path.join(d, "metadata.json")
        meta = json.load(open(p))
        if key == "":
            meta = value
        else:
            meta[key] = value
        json.dump(meta, open(p, "w"))
    return change


def _empty_test(d: str) -> None:
    """The dataset's metadata says its test split has no samples."""
    p = os.path.join(d, "metadata.json")
    meta = json.load(open(p))
    meta["samples"]["test"], meta["parts"]["test"] = 0, []
    json.dump(meta, open(p, "w"))


def _truncate(name: str) -> Callable[[str], None]:
    def change(d):
        p = os.path.join(d, name)
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) // 2)
    return change


def prepare(ws: str) -> dict:
    """A good dataset, a second one with another vocabulary, a trained checkpoint, batch files, a config."""
    good = os.path.join(ws, "good")
    os.makedirs(good)
    shutil.copy(SAMPLE, os.path.join(good, "train.txt"))
    for d, extra in ((good, []), (os.path.join(ws, "other"), ["--threshold=2"])):
        if d != good:
            os.makedirs(d)
            shutil.copy(SAMPLE, os.path.join(d, "train.txt"))
        code, msg, _ = run(["src/preprocess_data.py", f"--data_path={d}", "--pack_size=100"] + extra)
        assert code == 0, msg
    ds = os.path.join(good, "mindrecord")
    code, msg, _ = run(["train.py", f"--dataset_path={ds}", f"--ckpt_path={ws}/ckpt", "--batch_size=256",
                        "--do_eval=False", f"--loss_file_name={ws}/loss.log"])
    assert code == 0, msg
    ckpt = [f for f in os.listdir(f"{ws}/ckpt") if f.endswith(".safetensors")][0]
    code, msg, _ = run(["preprocess.py", f"--dataset_path={ds}", f"--infer_data_path={ws}/pre",
                        "--test_batch_size=100"])
    assert code == 0, msg
    return {"ds": ds, "other": os.path.join(ws, "other", "mindrecord"), "ckpt": os.path.join(ws, "ckpt", ckpt)}


def _csv_dir(ws: str, name: str, edit=lambda lines: lines, spec_edit=lambda text: text) -> Tuple[str, str]:
    """(ws/name holding the Avazu sample as train.csv, its spec) with `edit` applied to the CSV's lines and
    `spec_edit` to the text of examples/avazu/avazu.yaml."""
    d = os.path.join(ws, name)
    os.makedirs(d)
    with open(AVAZU, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(os.path.join(d, "train.csv"), "w", encoding="utf-8") as f:
        f.write("\n".join(edit(lines)) + "\n")
    spec = os.path.join(d, "spec.yaml")
    with open(AVAZU_SPEC, encoding="utf-8") as f, open(spec, "w", encoding="utf-8") as g:
        g.write(spec_edit(f.read()))
    return d, spec


def own_data_cases(ws: str) -> List[Case]:
    """Your own CSV (the Avazu sample) with one thing wrong in the spec or the file."""
    out = []
    for what, name, edit, spec_edit, expect in (
            ("a spec column the CSV header lacks", "spec_missing", None,
             lambda t: t.replace("site_domain,", "site_domian,"), "did you mean 'site_domain'"),
            ("a CSV column no spec key names", "spec_unnamed", None,
             lambda t: t.replace("ignore: [id]", "ignore: []"), "columns the spec does not name: ['id']"),
            ("a misspelt spec key", "spec_key", None, lambda t: t.replace("categorical:", "categorial:"),
             "unknown key 'categorial' (did you mean 'categorical'?)"),
            ("a multi-hot entry without its keys", "spec_multi", None, lambda t: t + "multi_hot: [device_model]\n",
             "multi_hot[0]: expected {name: COLUMN, separator: '|', max_len: N, pooling: sum|mean}"),
            ("a CSV field with an unquoted comma on every line", "csv_comma",
             lambda ls: ls[:1] + [x.replace(",14102100,", ",1410,2100,", 1) for x in ls[1:]], None, "field_count 100"),
            ("a quoted CSV field holding a line break", "csv_break",
             lambda ls: ls[:50] + [ls[50].replace(",1005,", ',"10\n05",', 1)] + ls[51:], None,
             "a quoted field holds a line break")):
        d, spec = _csv_dir(ws, name, edit or (lambda ls: ls), spec_edit or (lambda t: t))
        out.append(Case(what, ["src/preprocess_data.py", f"--data_path={d}", f"--feature_spec={spec}"], 2, expect,
                        os.path.join(d, "mindrecord")))
    return out


def cases(ws: str, p: dict) -> List[Case]:
    lines = open(SAMPLE, "rb").read().splitlines(keepends=True)
    ds, ckpt = p["ds"], p["ckpt"]
    out = []
    d = _data_dir(ws, "binary", np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    out.append(Case("train.txt is a binary file", ["src/preprocess_data.py", f"--data_path={d}"], 2,
                    "no good lines", os.path.join(d, "mindrecord")))
    d = _data_dir(ws, "tabs", b"".join(l.rstrip(b"\n") + b"\t\n" for l in lines))
    out.append(Case("a trailing tab on every line", ["src/preprocess_data.py", f"--data_path={d}"], 2,
                    "field_count 1,999", os.path.join(d, "mindrecord")))
    bad = [l if i % 20 else b"x" + l for i, l in enumerate(lines)]
    d = _data_dir(ws, "some_bad", b"".join(bad))
    out.append(Case("5% of the lines bad (max_bad_fraction 0.01)", ["src/preprocess_data.py", f"--data_path={d}"], 2,
                    "more than max_bad_fraction=0.01: label 100", os.path.join(d, "mindrecord")))
    d = _data_dir(ws, "truncgz", gzip.compress(b"".join(lines))[:-3000], gz=True)
    out.append(Case("train.txt.gz truncated", ["src/preprocess_data.py", f"--data_path={d}"], 2,
                    "not a whole gzip file", os.path.join(d, "mindrecord")))
    d = _data_dir(ws, "notgz", b"".join(lines), gz=True)
    out.append(Case("train.txt.gz is not gzip", ["src/preprocess_data.py", f"--data_path={d}"], 2,
                    "not a whole gzip file (Not a gzipped file", os.path.join(d, "mindrecord")))
    cfg = os.path.join(ws, "latin1.yaml")
    open(cfg, "wb").write(open(os.path.join(ROOT, "cpu_config.yaml"), "rb").read() + "# caf\xe9\n".encode("latin-1"))
    out += own_data_cases(ws)
    out.append(Case("config file not UTF-8", ["train.py", f"--config_path={cfg}"], 2, "not UTF-8 text"))
    out.append(Case("config_path is a folder", ["train.py", f"--config_path={ws}"], 2, "is a folder; expected a YAML"))
    out.append(Case("a misspelt option", ["train.py", "--bach_size=64"], 2, "did you mean 'batch_size'"))
    out.append(Case("a number that is not finite", ["train.py", "--learning_rate=nan"], 2,
                    "key 'learning_rate': expected a finite number, got nan"))
    out.append(Case("ckpt_file_name_prefix with a path", ["train.py", "--ckpt_file_name_prefix=../x"], 2,
                    "must be a plain file name"))
    out.append(Case("dataset_path missing", ["train.py", f"--dataset_path={ws}/nowhere"], 1, "not found"))
    out.append(Case("a device this MindSpore cannot run", ["train.py", f"--dataset_path={ds}", "--device_target=GPU",
                                                            "--batch_size=64", f"--ckpt_path={ws}/ck3"], 1,
                    "device_target=GPU is not available: this MindSpore"))
    out.append(Case("a training split smaller than the batch asked for (batch_size auto would fit it)",
                    ["train.py", f"--dataset_path={ds}", "--batch_size=4096", f"--ckpt_path={ws}/ck4"], 1,
                    "is larger than the training split"))
    d = _dataset_copy(ws, "meta_list", _edit_meta("", [1, 2]))
    out.append(Case("metadata.json of the wrong shape", ["train.py", f"--dataset_path={d}"], 1,
                    "must hold a JSON object"))
    d = _dataset_copy(ws, "meta_v1", _edit_meta("format_version", 1))
    out.append(Case("metadata.json of an older format", ["train.py", f"--dataset_path={d}"], 1,
                    "has format_version 1; this code reads formats 3, 4"))
    d = _dataset_copy(ws, "trunc_mr", _truncate("train-00000.mindrecord"))
    out.append(Case("a training part truncated", ["train.py", f"--dataset_path={d}"], 1,
                    "truncated or changed after preprocessing"))
    d = _dataset_copy(ws, "no_test", _empty_test)
    out.append(Case("an empty test split", ["train.py", f"--dataset_path={d}", f"--ckpt_path={ws}/ck2"], 1,
                    "the evaluation after training would fail"))
    for where, at, expect in (("its tensors", lambda size: size // 2, "fails its checksum"),
                              ("its model description", lambda size: size - 100, "is damaged")):
        bad_ckpt = os.path.join(ws, f"corrupt_{at(1000)}.safetensors")
        shutil.copy(ckpt, bad_ckpt)
        with open(bad_ckpt, "r+b") as f:
            f.seek(at(os.path.getsize(bad_ckpt)))
            f.write(b"\x7f" * 8)
        out.append(Case(f"a corrupted checkpoint ({where})", ["eval.py", f"--dataset_path={ds}",
                                                              f"--checkpoint_path={bad_ckpt}"], 1, expect))
    out.append(Case("a dataset with another vocabulary", ["eval.py", f"--dataset_path={p['other']}",
                                                          f"--checkpoint_path={ckpt}"], 2,
                    "does not fit dataset"))
    user = os.path.join(ws, "user_folder")
    os.makedirs(user)
    open(os.path.join(user, "notes.txt"), "w").write("mine")
    out.append(Case("infer_data_path is a folder of the user's", ["preprocess.py", f"--dataset_path={ds}",
                                                                  f"--infer_data_path={user}"], 1,
                    "with files this project did not write", user))
    res = os.path.join(ws, "res_nan")
    os.makedirs(res)
    for name in sorted(os.listdir(f"{ws}/pre/label")):
        n = os.path.getsize(f"{ws}/pre/label/{name}") // 4
        np.full((n, 1), np.nan, np.float32).tofile(os.path.join(res, name[:-4] + "_0.bin"))
    out.append(Case("NaN in inference results", ["postprocess.py", f"--result_path={res}",
                                                 f"--label_path={ws}/pre/label"], 1, "not a probability in [0, 1]"))
    return out


def table(todo: List[Case], results, ws: str) -> str:
    """The markdown table of the cases and what the commands printed (the scratch folder shown as WS)."""
    rows = ["| input | command | exit | message |", "|---|---|---|---|"]
    for c, (code, msg, _) in zip(todo, results):
        shown = msg.replace(ws, "WS").replace(ROOT + "/", "")
        cmd = " ".join(a.replace(ws, "WS") for a in c.args)
        rows.append(f"| {c.what} | `{cmd}` | {code} | {shown.replace('|', '/')} |")
    return "\n".join(rows)


def documented() -> str:
    """The table docs/reliability.md holds (between its markers)."""
    text = open(DOC, encoding="utf-8").read()
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()


def write_doc(text: str) -> None:
    """Put the table between docs/reliability.md's markers."""
    doc = open(DOC, encoding="utf-8").read()
    doc = doc[:doc.index(BEGIN) + len(BEGIN)] + "\n" + text + "\n" + doc[doc.index(END):]
    with open(DOC + ".tmp", "w", encoding="utf-8") as f:
        f.write(doc)
    os.replace(DOC + ".tmp", DOC)


def main(argv: Optional[List[str]] = None) -> None:
    """Run every case; print the markdown table (--check: fail on any unexpected outcome; --write: into the docs)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="scratch folder (default: a new temporary one, removed after)")
    ap.add_argument("--check", action="store_true", help="exit 1 on any unexpected outcome or a docs table that differs")
    ap.add_argument("--write", action="store_true", help="write the table into docs/reliability.md")
    args = ap.parse_args(argv)
    ws = args.work or tempfile.mkdtemp(prefix="dlrm_bad_inputs_")
    os.makedirs(ws, exist_ok=True)
    failures = []
    try:
        todo = cases(ws, prepare(ws))
        befores = [_digest(c.survives) if c.survives else None for c in todo]
        with ThreadPoolExecutor(2) as pool:          # the cases share no files: two at a time
            results = list(pool.map(lambda c: run(c.args), todo))
        text = table(todo, results, ws)
        print(text, flush=True)
        for c, before, (code, msg, traceback) in zip(todo, befores, results):
            if code != c.code or c.expect not in msg:
                failures.append(f"{c.what}: exit {code}, message {msg!r}; expected exit {c.code} and {c.expect!r}")
            if traceback:
                failures.append(f"{c.what}: the command printed a traceback to stderr")
            if before is not None and _digest(c.survives) != before:
                failures.append(f"{c.what}: {c.survives} was changed")
    finally:
        if args.work is None:
            shutil.rmtree(ws, ignore_errors=True)
    if args.write:
        write_doc(text)
    elif args.check and documented() != text:
        failures.append(f"{DOC} does not hold this table: run python -m src.tools.bad_inputs --write")
    for f in failures:
        print(f"UNEXPECTED: {f}", file=sys.stderr)
    if args.check and failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
