"""The bytes each layout sends per step, and the collective each backend uses, against the evidence table of
docs/distributed.md (which a reader checks against MindSpore 2.10's own sources and wheel)."""
import os
import re

from fixtures.paths import ROOT
from src.training.cost_model import COLLECTIVES, EXCHANGE, bytes_per_step, exchange_is_alltoall


def test_bytes_per_step_formula():
    """hybrid: all-to-all bytes flat in N (N-1 times that as the CPU's AllGathers); data parallel grows with N."""
    mlp, m = 475_985, 16384 * 26
    assert bytes_per_step("hybrid_parallel", 1, 16384, 26, 16, mlp)["total"] == 0
    two = bytes_per_step("hybrid_parallel", 2, 16384, 26, 16, mlp)
    assert two["ids_alltoall"] == 0.5 * m * 4 and two["vectors_alltoall"] == 0.5 * m * 16 * 4 == two["grads_alltoall"]
    cpu = bytes_per_step("hybrid_parallel", 4, 16384, 26, 16, mlp, native_alltoall=False)
    four = bytes_per_step("hybrid_parallel", 4, 16384, 26, 16, mlp)
    assert cpu["vectors_alltoall_as_allgathers"] == 3 * four["vectors_alltoall"]
    hyb = {n: bytes_per_step("hybrid_parallel", n, 16384, 26, 16, mlp)["total"] for n in (8, 64, 512)}
    assert max(hyb.values()) < 1.15 * min(hyb.values())                         # (N-1)/N: flat in N
    dp = bytes_per_step("data_parallel", 8, 16384, 26, 16, mlp)
    assert hyb[8] < dp["total"]
    rep = bytes_per_step("hybrid_parallel", 8, 16384, 26, 16, mlp, exchanged_slots=20, replicated_rows=1000)
    assert rep["ids_alltoall"] == 7 / 8 * 16384 * 20 * 4
    assert rep["mlp_and_loss_allreduce"] == 2 * 7 / 8 * (mlp + 1000 * 16 + 1) * 4


def _evidence_table():
    """{(primitive, backend): (evidence, run here)} from docs/distributed.md's collectives table."""
    text = open(os.path.join(ROOT, "docs", "distributed.md"), encoding="utf-8").read()
    rows = re.findall(r"^\| `(\w+)` \| (CPU|GPU|Ascend) \| (yes|no) \| (.+?) \| (yes|no) \|$", text, re.M)
    return {(p, b): (used, evidence, ran) for p, b, used, evidence, ran in rows}


def test_each_backend_uses_only_the_collectives_the_evidence_table_allows():
    table = _evidence_table()
    assert {b for _, b in table} == {"CPU", "GPU", "Ascend"} and len(table) >= 9
    for backend, used in COLLECTIVES.items():
        for primitive in ("AllReduce", "AllGather", "AlltoAll"):
            assert table[(primitive, backend)][0] == ("yes" if primitive in used else "no"), (primitive, backend)
    assert EXCHANGE == {"CPU": "AllGather", "GPU": "AllGather", "Ascend": "AlltoAll"}
    assert [exchange_is_alltoall(b) for b in ("CPU", "GPU", "Ascend")] == [False, False, True]
    assert table[("AllGather", "CPU")][2] == "yes" and table[("AlltoAll", "GPU")][2] == "no"


def test_the_installed_mindspore_documents_the_platforms_the_table_cites():
    """The wheel's own docstrings: AlltoAll is documented for Ascend only, AllGather for Ascend and GPU, AllReduce
    for all three (what the table's "docs" evidence quotes)."""
    from mindspore import ops

    def platforms(op):
        return re.search(r"Supported Platforms:\s*\n\s*(.*)", getattr(ops, op).__doc__).group(1).replace("``", "").split()
    assert platforms("AlltoAll") == ["Ascend"]
    assert platforms("AllGather") == ["Ascend", "GPU"]
    assert platforms("AllReduce") == ["Ascend", "GPU", "CPU"]
