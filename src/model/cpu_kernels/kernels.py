"""Build, cache and load the CPU kernels of this package (C++ sources beside this file) for MindSpore's Custom op
(func_type="aot": the op calls `int f(nparam, params, ndims, shapes, dtypes, stream, extra)` in a shared library).

A library is compiled once per (source, compiler, flags, CPU) with the C++ compiler `$CXX` (default g++) into the
cache folder `$DLRM_KERNEL_CACHE` (default ~/.cache/dlrm-mindspore/kernels), written under a temporary name and renamed
so concurrent processes never load a half-written file. Without a compiler (or when it fails) `library` returns None
and `unavailable_reason` says why; the model then uses the stock ops.
"""
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple

HERE = Path(__file__).resolve().parent
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")


def cache_dir() -> Path:
    """The folder holding built libraries: $DLRM_KERNEL_CACHE or ~/.cache/dlrm-mindspore/kernels."""
    env = os.environ.get("DLRM_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dlrm-mindspore" / "kernels"


def _cpu_identity() -> str:
    """The CPU's model name and flags (-march=native code is only valid on the CPU it was built for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
    return "\n".join(keep)


def _compiler_version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else ""


@lru_cache(maxsize=None)
def _build(name: str) -> Tuple[Optional[Path], str]:
    """(path of the built library of `name`.cc, "") or (None, the reason it could not be built)."""
    source = HERE / f"{name}.cc"
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        return None, f"no C++ compiler ({cxx!r} is not on PATH; set CXX)"
    key = hashlib.sha256("\0".join([source.read_text(), cxx, _compiler_version(cxx), " ".join(FLAGS),
                                    _cpu_identity()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if target.exists():
        return target, ""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so.tmp", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *FLAGS, "-o", tmp, str(source)], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no output)"])[0]
            return None, f"{cxx} failed on {source.name}: {first}"
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target, ""


def library(name: str) -> Optional[Path]:
    """The built shared library of the kernel source `name` (e.g. "dot_interaction"), or None without a compiler."""
    return _build(name)[0]


def unavailable_reason(name: str) -> str:
    """Why `library(name)` is None ("" when it is built)."""
    return _build(name)[1]
