"""DLRMSpec: the one typed description of a model that preprocessing, the model, training and inference all read.

    spec = DLRMSpec.from_config(cfg, metadata)       # the YAML keys + the dataset's features and table sizes
    spec.interaction_width, spec.offsets, spec.mlp_params, spec.state_bytes(rows), spec.to_json()

It holds the features (name, kind, table rows, ids per sample, pooling), the embedding dimension, both MLPs, the
interaction (one class per kind: DotInteraction, CatInteraction, DcnInteraction) and the optimizer (one class per
kind: its state per table row and per weight). Every width, table offset, parameter count, state size and FLOP
count of the project is computed here and nowhere else; the checkpoint's `meta.model` stores the spec.
No MindSpore import: the checks and plans made before MindSpore loads read it.

Example (Criteo Kaggle, the default config's network with interaction_op=dot; the default dcn is 16 + 26 x 16 = 432
wide): 13 dense and 26 categorical features, tables of 33,762,577 rows in all,
dim 16, bottom 13-512-256-64-16, dot interaction over 27 vectors -> 16 + 351 = 367 wide, top 367-512-256-1:
spec.mlp_params = 475,985; spec.table_params = 540,201,232.
"""
import json
from types import SimpleNamespace
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

FEATURE_KINDS = ("dense", "categorical", "multi_hot")
POOLINGS = ("sum", "mean")
BYTES = 4                     # float32 parameters, optimizer state, embedding vectors and activations
ID_BYTES = 4                  # int32 ids
CRITEO_DENSE = 13             # the Criteo layout's dense features: a model description without dense_dim is Criteo's


def lookup_slots_of(features: Sequence["Feature"]) -> Tuple[int, ...]:
    """The slot of every column of the ids input [L] of these features (in model order): one per categorical slot,
    max_len consecutive ones per multi_hot slot. The one place the ids input is laid out (DLRMSpec and the data
    layer's Columns both read it)."""
    return tuple(s for s, f in enumerate(f for f in features if f.kind != "dense") for _ in range(f.max_len))


@dataclass(frozen=True)
class Feature:
    """One input of the model. dense: a number per sample. categorical: one id per sample into a table of `rows`.
    multi_hot: up to `max_len` ids per sample into a table of `rows`, pooled (`pooling`: sum or mean) into one vector."""
    name: str
    kind: str
    rows: int = 0
    max_len: int = 1
    pooling: str = "sum"

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature {self.name!r}: kind {self.kind!r} is not one of {list(FEATURE_KINDS)}")
        if self.kind != "dense" and self.rows < 1:
            raise ValueError(f"feature {self.name!r}: a {self.kind} feature needs a table of at least one row")
        if self.max_len < 1 or (self.kind != "multi_hot" and self.max_len != 1):
            raise ValueError(f"feature {self.name!r}: max_len {self.max_len} (only a multi_hot feature has more than 1)")
        if self.pooling not in POOLINGS:
            raise ValueError(f"feature {self.name!r}: pooling {self.pooling!r} is not one of {list(POOLINGS)}")

    @property
    def sparse(self) -> bool:
        """True for a feature with a table (a slot): categorical or multi_hot."""
        return self.kind != "dense"

    def record(self) -> dict:
        """The feature as a dataset's metadata.json "features" lists it: name and kind, the table rows of a sparse
        feature, max_len and pooling of a multi_hot one (features_of reads it back)."""
        out = {"name": self.name, "kind": self.kind}
        if self.kind != "dense":
            out["rows"] = int(self.rows)
        if self.kind == "multi_hot":
            out.update(max_len=self.max_len, pooling=self.pooling)
        return out


# ---------------------------------------------------------------- interactions: one class each
@dataclass(frozen=True)
class Interaction:
    """How the dense vector (width dense_out, 0 without dense features) and the S pooled embeddings (dim D) meet.
    `cell`: its MindSpore cell's class in src/model/interactions.py, built with (spec, seed)."""
    name = ""
    cell = ""

    def width(self, dense_out: int, slots: int, dim: int) -> int:
        """Width F of the interaction's output (the top MLP's input)."""
        raise NotImplementedError

    def params(self, dense_out: int, slots: int, dim: int) -> int:
        """Trainable weights of the interaction itself."""
        return 0

    def flops(self, dense_out: int, slots: int, dim: int) -> int:
        """Multiply-adds x 2 of one sample's forward pass through the interaction."""
        return 0

    @classmethod
    def from_config(cls, cfg) -> "Interaction":
        """The interaction with its keys' values from the config (none by default)."""
        return cls()

    def config_values(self) -> Dict[str, object]:
        """Its own config keys with its values (from_config's inverse)."""
        return {}

    def bottom_must_end_with(self, emb_dim: int) -> Optional[int]:
        """The width the bottom MLP's output must have for this interaction, or None (any)."""
        return None


@dataclass(frozen=True)
class DotInteraction(Interaction):
    """Pairwise dot products of the S (+1 dense) vectors: the strict lower triangle, or with the diagonal (`itself`),
    after the dense vector. Needs the dense vector as wide as the embeddings."""
    itself: bool = False
    name = "dot"
    cell = "DotInteractionCell"

    @classmethod
    def from_config(cls, cfg) -> "DotInteraction":
        """interaction_itself."""
        return cls(itself=bool(cfg.interaction_itself))

    def config_values(self) -> Dict[str, object]:
        return {"interaction_itself": self.itself}

    def bottom_must_end_with(self, emb_dim: int) -> Optional[int]:
        return emb_dim                                           # dot products need vectors of one width

    def vectors(self, dense_out: int, slots: int) -> int:
        """Vectors that meet: the S embeddings and, with dense features, the dense vector."""
        return slots + (1 if dense_out else 0)

    def pairs(self, dense_out: int, slots: int) -> int:
        """Dot products kept: n(n-1)/2, or n(n+1)/2 with the diagonal."""
        n = self.vectors(dense_out, slots)
        return n * (n + 1) // 2 if self.itself else n * (n - 1) // 2

    def width(self, dense_out: int, slots: int, dim: int) -> int:
        return dense_out + self.pairs(dense_out, slots)

    def flops(self, dense_out: int, slots: int, dim: int) -> int:
        n = self.vectors(dense_out, slots)
        return 2 * n * n * dim                                   # the [n, D] x [D, n] batched matmul


@dataclass(frozen=True)
class CatInteraction(Interaction):
    """The concatenation [dense vector, emb_1, ..., emb_S]."""
    name = "cat"
    cell = "CatInteractionCell"

    def width(self, dense_out: int, slots: int, dim: int) -> int:
        return dense_out + slots * dim


@dataclass(frozen=True)
class DcnInteraction(Interaction):
    """DCN-V2 (Wang et al. 2020): the concatenation x0 through `layers` cross layers
    x_{l+1} = x0 * (U_l (V_l^T x_l) + b_l) + x_l (rank r; 0 = a full-rank W_l)."""
    layers: int = 3
    rank: int = 0
    name = "dcn"
    cell = "DCNInteractionCell"

    @classmethod
    def from_config(cls, cfg) -> "DcnInteraction":
        """dcn_num_layers and dcn_low_rank_dim."""
        return cls(layers=int(cfg.dcn_num_layers), rank=int(cfg.dcn_low_rank_dim))

    def config_values(self) -> Dict[str, object]:
        return {"dcn_num_layers": self.layers, "dcn_low_rank_dim": self.rank}

    def width(self, dense_out: int, slots: int, dim: int) -> int:
        return dense_out + slots * dim

    def params(self, dense_out: int, slots: int, dim: int) -> int:
        f = self.width(dense_out, slots, dim)
        return self.layers * ((2 * f * self.rank if self.rank else f * f) + f)

    def flops(self, dense_out: int, slots: int, dim: int) -> int:
        f = self.width(dense_out, slots, dim)
        return self.layers * 2 * (2 * f * self.rank if self.rank else f * f)


INTERACTIONS = {"dot": DotInteraction, "cat": CatInteraction, "dcn": DcnInteraction}


def interaction_from_config(cfg) -> Interaction:
    """The interaction the config's keys describe (interaction_op, looked up in INTERACTIONS, and its keys)."""
    return INTERACTIONS[cfg.interaction_op].from_config(cfg)


# ---------------------------------------------------------------- optimizers: one registry
@dataclass(frozen=True)
class Optimizer:
    """An optimizer as the model description holds it: its name, the float32 state it keeps (per table row, per MLP
    weight, scalars) and where its train-step cells are, "module:OneProcessStep,HybridStep" (imported when a step is
    made: MindSpore compiles a cell class only from its source file, so an optimizer's step classes are written out in
    its module, src/training/train_step.py for these three)."""
    name: str
    per_row: int = 0
    per_weight: int = 0
    scalars: int = 0
    steps: str = ""
    adaptive: bool = True          # per-weight step sizes: its rate scales with the square root of the batch, and
                                   # its first full-rate steps want a warmup; False (SGD): linearly, and none


_STEPS = "src.training.train_step"
# The registry (config choices, --help, the model description and the train step all read it): adding an optimizer
# is its module (its update rule and two step classes) and one line here.
#   sgd      plain SGD: no state
#   adagrad  Adagrad for the MLPs (one accumulator per weight), row-wise Adagrad for the tables (one per row)
#   adam     Adam for the MLPs and the interaction (m and v per weight, the step count), row-wise Adagrad for the tables
OPTIMIZERS: Dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("sgd", steps=f"{_STEPS}:SGDTrainStep,SGDHybridTrainStep", adaptive=False),
    Optimizer("adagrad", per_row=1, per_weight=1, steps=f"{_STEPS}:AdagradTrainStep,AdagradHybridTrainStep"),
    Optimizer("adam", per_row=1, per_weight=2, scalars=1, steps=f"{_STEPS}:AdamTrainStep,AdamHybridTrainStep"),
)}


# ---------------------------------------------------------------- the model
def _mlp_params(widths: Sequence[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def check_widths(emb_dim: int, bottom: Sequence[int], top: Sequence[int], interaction: "Interaction",
                 dense: bool) -> None:
    """The network's widths, checked once for the spec and the config alike (messages in the config's keys): a
    positive data_emb_dim; positive MLP widths; a bottom MLP when there are dense features; a top MLP ending with 1;
    the interaction's own need (dot: the bottom ends with data_emb_dim). Raises ValueError."""
    if emb_dim < 1:
        raise ValueError(f"data_emb_dim must be positive, got {emb_dim}")
    if dense and not bottom:
        raise ValueError("bottom_mlp_args must not be empty when there are dense features")
    if not top:
        raise ValueError("top_mlp_args must not be empty")
    if any(w <= 0 for w in [*bottom, *top]):
        raise ValueError(f"bottom_mlp_args/top_mlp_args must be positive layer widths, got {list(bottom)} and "
                         f"{list(top)}")
    if top[-1] != 1:
        raise ValueError(f"top_mlp_args must end with 1 (the click logit), got {list(top)}")
    need = interaction.bottom_must_end_with(emb_dim) if dense else None
    if need is not None and bottom[-1] != need:
        raise ValueError(f"the {interaction.name} interaction needs the bottom MLP to end with the embedding dimension: "
                         f"bottom_mlp_args {list(bottom)} ends with {bottom[-1]}, data_emb_dim is {emb_dim}")


@dataclass(frozen=True)
class DLRMSpec:
    """The model: features, embedding dimension, the bottom (dense) and top (over) MLP widths, the interaction and
    the optimizer. Frozen; built once (from_config / from_json) and passed to every layer."""
    features: Tuple[Feature, ...]
    emb_dim: int
    bottom: Tuple[int, ...]
    top: Tuple[int, ...]
    interaction: Interaction = field(default_factory=DotInteraction)
    optimizer: Optimizer = field(default_factory=lambda: OPTIMIZERS["sgd"])

    def __post_init__(self):
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "bottom", tuple(int(w) for w in self.bottom))
        object.__setattr__(self, "top", tuple(int(w) for w in self.top))
        if not self.sparse:
            raise ValueError("the model needs at least one categorical or multi_hot feature")
        check_widths(self.emb_dim, self.bottom, self.top, self.interaction, self.dense_dim > 0)
        if self.interaction_width < 1:
            raise ValueError(f"the {self.interaction.name} interaction of {self.slots} embedding(s) and "
                             f"{self.dense_dim} dense feature(s) has no output (one vector has no pairwise dot "
                             f"product): use interaction_op=cat, or interaction_itself=True")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique: {names}")

    # features
    @property
    def dense(self) -> Tuple[Feature, ...]:
        """The dense features, in input order."""
        return tuple(f for f in self.features if f.kind == "dense")

    @property
    def sparse(self) -> Tuple[Feature, ...]:
        """The categorical and multi_hot features (one table each), in input order: the model's slots."""
        return tuple(f for f in self.features if f.kind != "dense")

    @property
    def dense_dim(self) -> int:
        """Dense inputs per sample."""
        return len(self.dense)

    @property
    def slots(self) -> int:
        """Tables, one per categorical or multi_hot feature."""
        return len(self.sparse)

    @property
    def table_sizes(self) -> Tuple[int, ...]:
        """Rows of each slot's table."""
        return tuple(f.rows for f in self.sparse)

    @property
    def offsets(self) -> Tuple[int, ...]:
        """First row of each slot's table in the fused table (all tables stacked in slot order)."""
        out, at = [], 0
        for n in self.table_sizes:
            out.append(at)
            at += n
        return tuple(out)

    @property
    def total_rows(self) -> int:
        """Rows of the fused table."""
        return sum(self.table_sizes)

    @property
    def lookups(self) -> int:
        """Ids per sample: one per categorical slot, max_len per multi_hot slot (the width of the ids input)."""
        return len(self.lookup_slots)

    @property
    def pooled(self) -> bool:
        """True with a multi_hot feature: its ids (-1 pads) are pooled into one vector per slot."""
        return any(f.kind == "multi_hot" for f in self.sparse)

    @property
    def lookup_slots(self) -> Tuple[int, ...]:
        """The slot of every column of the ids input [L]: a multi_hot slot's max_len columns are consecutive."""
        return lookup_slots_of(self.features)

    @property
    def lookup_offsets(self) -> Tuple[int, ...]:
        """The fused-table row of id 0 for every column of the ids input [L] (its slot's offset)."""
        return tuple(self.offsets[s] for s in self.lookup_slots)

    @property
    def mean_pooled_slots(self) -> Tuple[int, ...]:
        """Slots whose ids are averaged (pooling mean); the others' are summed."""
        return tuple(s for s, f in enumerate(self.sparse) if f.kind == "multi_hot" and f.pooling == "mean")

    # widths and counts
    @property
    def dense_out(self) -> int:
        """Width of the bottom MLP's output (0 without dense features: no bottom MLP)."""
        return self.bottom[-1] if self.dense_dim else 0

    @property
    def interaction_width(self) -> int:
        """Width of the interaction's output, the top MLP's input."""
        return self.interaction.width(self.dense_out, self.slots, self.emb_dim)

    @property
    def bottom_params(self) -> int:
        """Weights and biases of the bottom MLP."""
        return _mlp_params([self.dense_dim, *self.bottom]) if self.dense_dim else 0

    @property
    def top_params(self) -> int:
        """Weights and biases of the top MLP."""
        return _mlp_params([self.interaction_width, *self.top])

    @property
    def mlp_params(self) -> int:
        """Every trainable weight but the tables: both MLPs and the interaction's (data-parallel in every layout)."""
        return self.bottom_params + self.top_params + self.interaction.params(self.dense_out, self.slots, self.emb_dim)

    @property
    def table_params(self) -> int:
        """Weights of the fused table."""
        return self.total_rows * self.emb_dim

    @property
    def mlp_bytes(self) -> int:
        """Bytes of every trainable weight but the tables (float32)."""
        return BYTES * self.mlp_params

    def table_bytes(self, rows: Optional[int] = None) -> int:
        """Bytes of `rows` table rows (default: all) of emb_dim float32 values."""
        return BYTES * (self.total_rows if rows is None else rows) * self.emb_dim

    def rows_in(self, nbytes: int) -> int:
        """How many table rows `nbytes` bytes hold."""
        return nbytes // (BYTES * self.emb_dim)

    def vector_bytes(self, n: int) -> float:
        """Bytes of n embedding vectors (a lookup's result or gradient)."""
        return BYTES * n * self.emb_dim

    def layer_shapes(self) -> List[Tuple[int, int]]:
        """(in, out) of every MLP layer: the bottom's (none without dense features), then the top's."""
        bottom = [self.dense_dim, *self.bottom] if self.dense_dim else []
        top = [self.interaction_width, *self.top]
        return list(zip(bottom[:-1], bottom[1:])) + list(zip(top[:-1], top[1:]))

    def matmul_flops(self, batch: int) -> int:
        """FLOPs of the MLP layers' forward, input-gradient and weight-gradient products at `batch`."""
        return sum(3 * 2 * batch * i * o for i, o in self.layer_shapes())

    def state_bytes(self, rows: Optional[int] = None) -> int:
        """Optimizer state in bytes for `rows` table rows (default: all) and every MLP weight."""
        rows = self.total_rows if rows is None else rows
        opt = self.optimizer
        return BYTES * (opt.per_row * rows + opt.per_weight * self.mlp_params + opt.scalars)

    def sizes(self) -> Dict[str, int]:
        """Rows, parameter counts and byte sizes (float32) of the whole model, for printing before training."""
        params = self.table_params + self.mlp_params
        return {"rows": self.total_rows, "table_params": self.table_params, "mlp_params": self.mlp_params,
                "params": params, "param_bytes": self.table_bytes() + self.mlp_bytes,
                "optimizer_state_bytes": self.state_bytes(),
                "checkpoint_bytes": self.table_bytes() + self.mlp_bytes + self.state_bytes()}

    def activation_width(self) -> int:
        """Float32 values one sample carries through a step (layer outputs, the interaction, the embeddings), the
        memory planner's unit of activation memory."""
        return (sum(self.bottom) if self.dense_dim else 0) + sum(self.top) + 3 * self.interaction_width + \
            3 * self.lookups * self.emb_dim + max([*self.bottom, *self.top, self.interaction_width])

    def flops_per_sample(self) -> int:
        """FLOPs of one sample's training step (forward and backward: 3x the forward multiply-adds x 2) through the
        MLPs and the interaction; the table gathers and updates are memory traffic, not counted."""
        fwd = 2 * (self.bottom_params + self.top_params) + self.interaction.flops(self.dense_out, self.slots,
                                                                                 self.emb_dim)
        return 3 * fwd

    def config_values(self) -> Dict[str, object]:
        """The model-zoo config keys this spec answers, with its values (from_config's keys): a command line that
        sets one of them to another value asks for another model."""
        inter = self.interaction
        return {"data_emb_dim": self.emb_dim, "bottom_mlp_args": list(self.bottom), "top_mlp_args": list(self.top),
                "interaction_op": inter.name, **inter.config_values()}

    # serialisation
    def to_json(self) -> dict:
        """The spec as a JSON-able dict (what checkpoints store as meta.model["spec"])."""
        inter = {"name": self.interaction.name, **asdict(self.interaction)}
        return {"features": [asdict(f) for f in self.features], "emb_dim": self.emb_dim, "bottom": list(self.bottom),
                "top": list(self.top), "interaction": inter, "optimizer": self.optimizer.name}

    @classmethod
    def from_json(cls, data: dict) -> "DLRMSpec":
        """The spec of to_json()."""
        inter = dict(data["interaction"])
        kind = INTERACTIONS[inter.pop("name")]
        return cls(features=tuple(Feature(**f) for f in data["features"]), emb_dim=int(data["emb_dim"]),
                   bottom=tuple(data["bottom"]), top=tuple(data["top"]), interaction=kind(**inter),
                   optimizer=OPTIMIZERS[data["optimizer"]])

    def dumps(self) -> str:
        """to_json() as compact, key-sorted text."""
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_config(cls, cfg, features: Sequence[Feature]) -> "DLRMSpec":
        """The spec of the config's model keys (data_emb_dim, bottom_mlp_args, top_mlp_args, interaction_op and
        its keys, optimizer) over `features` (the dataset's: features_of(metadata))."""
        return cls(features=tuple(features), emb_dim=int(cfg.data_emb_dim), bottom=tuple(cfg.bottom_mlp_args),
                   top=tuple(cfg.top_mlp_args), interaction=interaction_from_config(cfg),
                   optimizer=OPTIMIZERS[cfg.optimizer])


def criteo_features(table_sizes: Sequence[int], dense_dim: int = CRITEO_DENSE) -> List[Feature]:
    """The Criteo layout: dense I1..I{dense_dim}, categorical C1..C{S} with these table sizes."""
    return [Feature(f"I{i + 1}", "dense") for i in range(dense_dim)] + \
        [Feature(f"C{i + 1}", "categorical", rows=int(n)) for i, n in enumerate(table_sizes)]


def features_of(meta: dict) -> List[Feature]:
    """The features a dataset's metadata.json describes (its "features", or the Criteo layout of its sizes)."""
    if "features" in meta:
        return [Feature(**f) for f in meta["features"]]
    return criteo_features(meta["table_sizes"], meta["dense_dim"])


def spec_from_legacy(model: dict) -> DLRMSpec:
    """The spec of a checkpoint written before specs (its ARCH keys and table sizes)."""
    keys = SimpleNamespace(interaction_itself=model.get("interaction_itself", False),
                           dcn_num_layers=model.get("dcn_num_layers", 3), dcn_low_rank_dim=model.get("dcn_low_rank_dim", 0))
    inter = INTERACTIONS[model.get("interaction_op", "dot")].from_config(keys)
    return DLRMSpec(features=tuple(criteo_features(model["table_sizes"], model.get("dense_dim", CRITEO_DENSE))),
                    emb_dim=int(model["data_emb_dim"]), bottom=tuple(model["bottom_mlp_args"]),
                    top=tuple(model["top_mlp_args"]), interaction=inter,
                    optimizer=OPTIMIZERS[model.get("optimizer", "sgd")])
