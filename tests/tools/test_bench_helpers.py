"""The benchmark suites' own arithmetic: the spec's layer shapes and MatMul FLOPs (the GEMM suite's) agree with its
FLOPs per sample, kernels are
counted from an IR file without MindSpore's bookkeeping nodes, and a recipe moved to another batch size scales its
learning rate (linearly for SGD, by the square root for Adagrad and Adam)."""
from fixtures.paths import make_cfg
from src.model_utils.spec import DLRMSpec, criteo_features
from src.tools.benchmarks.gemm import count_kernels
from src.tools.benchmarks.quality import RECIPES, Recipe, pick


def test_layer_shapes_and_flops_agree_with_the_spec():
    for interaction in ("dot", "dcn"):
        cfg = make_cfg(f"--interaction_op={interaction}", "--dcn_low_rank_dim=64")
        spec = DLRMSpec.from_config(cfg, criteo_features([1000] * 26))
        shapes = spec.layer_shapes()
        assert shapes[0] == (13, 512) and shapes[3] == (64, 16) and shapes[4] == (spec.interaction_width, 512)
        biases = sum(o for _, o in shapes)
        fwd_interaction = spec.interaction.flops(spec.dense_out, spec.slots, spec.emb_dim)
        # the spec counts 3 x (2 x weights and biases + the interaction); the products are 3 x 2 x weights
        assert spec.matmul_flops(1) + 3 * (2 * biases + fwd_interaction) == spec.flops_per_sample()


def test_kernels_are_counted_without_bookkeeping_nodes(tmp_path):
    ir = tmp_path / "graph_build_0_0001.ir"
    ir.write_text("  %1(x) = PrimFunc_MatMul(%para1, %para2)\n  %2(y) = UpdateState(%u, %1)\n"
                  "  %3(z) = Load(%para3, %2)\n  %4(w) = PrimFunc_MatMul(%1, %3)\n  %5(v) = IndexAdd(%4, %1)\n"
                  "  %6(t) = TupleGetItem(%5, I64(0))\n  %7(r) = Depend(%6, %2)\n")
    assert count_kernels(str(ir)) == {"MatMul": 2, "IndexAdd": 1}


def test_recipes_scale_their_learning_rate_with_the_batch():
    adam = RECIPES["large-dcn-adam"].at_batch(1024, 13)
    assert adam.batch == 1024 and adam.warmup_steps == 13 and "--learning_rate=0.005" in adam.options
    sgd = Recipe("sgd", 128, ("--optimizer=sgd", "--learning_rate=0.15")).at_batch(1024, 0)
    assert "--learning_rate=1.2" in sgd.options
    assert "--decay_steps=-1" in RECIPES["large-dcn-adam"].args()
    assert list(pick("sgd,dcn-adam")) == ["sgd", "dcn-adam"]
