"""The cells src/tools/benchmarks/gemm.py times (in their own file: MindSpore compiles a cell from its class's source)."""
from typing import List

import mindspore as ms
from mindspore import nn, ops


class LayerProducts(nn.Cell):
    """(x_l float32 [B, in_l], w_l float32 [out_l, in_l], dy_l float32 [B, out_l]) for l = 1..L, flattened ->
    the L x 3 products of a layer's training step: x w^T [B, out], dy w [B, in], dy^T x [out, in]."""

    def __init__(self, layers: int):
        super().__init__()
        self.layers = layers
        self.fwd = ops.MatMul(transpose_b=True)
        self.dx = ops.MatMul()
        self.dw = ops.MatMul(transpose_a=True)

    def construct(self, *args):
        out = ()
        for i in range(self.layers):
            x, w, dy = args[3 * i], args[3 * i + 1], args[3 * i + 2]
            out = out + (self.fwd(x, w), self.dx(dy, w), self.dw(dy, x))
        return out


class Gather(nn.Cell):
    """ids int32 [B, S] -> the looked-up rows float32 [B, S, D] (the train step's gather)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.table = net.table

    def construct(self, ids):
        rows = self.net.global_rows(ids).reshape(-1)
        return ops.gather(self.table, rows, 0).reshape(ids.shape[0], ids.shape[1], self.table.shape[1])


class Forward(nn.Cell):
    """(dense float32 [B, Dn], emb float32 [B, S, D], label float32 [B, 1]) -> mean BCE loss float32 scalar."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.loss = nn.BCEWithLogitsLoss()

    def construct(self, dense, emb, label):
        return self.loss(self.net.from_embeddings(dense, emb), label)


class Backward(nn.Cell):
    """Forward's loss and its gradients w.r.t. emb and the MLP weights (the train step's autodiff, no update)."""

    def __init__(self, forward: Forward, weights: List):
        super().__init__()
        self.grad = ms.value_and_grad(forward, grad_position=1, weights=ms.ParameterTuple(weights))

    def construct(self, dense, emb, label):
        loss, (g_emb, g_w) = self.grad(dense, emb, label)
        return loss, g_emb, g_w
