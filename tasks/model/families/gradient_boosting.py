"""gradient_boosting: gradient-boosted decision trees (LightGBM) for tables, served as a torch module.

LightGBM grows the trees on the inputs every table family reads, with early stopping on validation; TreeEnsemble
walks every tree at once with gathers (Hummingbird's tree traversal), so trees are exported, parity-checked and
gated like a network. Why LightGBM: docs/spec.md.
"""

import os
import time

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from tasks.core.errors import GreenlightError
from tasks.core.spec import ModelSpec
from tasks.model.families.contract import (
    DirectFit,
    Family,
    FamilyOptions,
    InputDescription,
    RoundMetrics,
    TrainingRows,
    parse_options,
)


class GradientBoostingOptions(FamilyOptions):
    """model.options of gradient_boosting (LightGBM's names and meanings)."""

    # A smaller step than LightGBM's 0.1 with more rounds: early stopping on validation picks the count, and the
    # smaller step is the usual better trade on tables of a few thousand rows.
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    max_rounds: int = Field(2000, ge=1, le=20_000)
    # Stop when validation loss has not improved for this many rounds (the best round is kept).
    early_stopping_rounds: int = Field(100, ge=1, le=5000)
    num_leaves: int = Field(31, ge=2, le=1024)
    # Leaf-wise growth makes chains: 31 leaves reached depth 20 on hotel_rates. The served walk takes one gather
    # per level of the deepest tree for every tree, so depth is serving time; 10 levels hold 31 leaves with room
    # (hotel_rates: R^2 0.9622 at depth <= 10 against 0.9623 unbounded, 1,179 trees instead of 1,363).
    max_depth: int = Field(10, ge=1, le=64)
    # LightGBM's default; a smaller leaf lets trees memorise single rows of a 150-row table.
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0.0, le=1.0)
    lambda_l2: float = Field(1.0, ge=0.0)
    # Categories seen in fewer rows than this are not split on alone (LightGBM's min_data_per_group).
    min_data_per_group: int = Field(20, ge=1)


class TreeEnsemble(nn.Module):
    """Every tree of a boosted ensemble walked at once: node arrays padded to the largest tree, one gather per
    level. Leaves point to themselves, so a shallow tree just stays on its leaf while deeper ones go on."""

    def __init__(self, n_numeric: int, n_codes: int, n_outputs: int) -> None:
        super().__init__()
        self.n_numeric, self.n_codes, self.n_outputs = n_numeric, n_codes, n_outputs
        self.depth = 0  # levels to walk: the deepest tree's
        self.nodes = 1  # node slots per tree (padded)
        self.categories = 1  # width of a categorical split's member table (the largest code + 1)
        # Node arrays in int32 and the member table in uint8: a quarter to a half of int64 / float32 on disk
        # (hotel_rates: 2,000 trees with categorical splits over ~400 codes, 18 MB -> ~5 MB).
        for name in ("feature", "left", "right"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(0))
        self.register_buffer("leaf_value", torch.zeros(0))
        # A categorical split sends a code left when members[member_row, code] is 1 (member_row 0: never).
        self.register_buffer("member_row", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("members", torch.zeros(1, dtype=torch.uint8))
        self.register_buffer("output_of_tree", torch.zeros(0, n_outputs))  # [trees, outputs] one-hot

    @property
    def trees(self) -> int:
        return self.output_of_tree.shape[0]

    def forward(self, numeric: Tensor, codes: Tensor) -> Tensor:
        x = torch.cat([numeric.float(), codes.float()], dim=1)
        rows = x.shape[0]
        offsets = torch.arange(self.trees, device=x.device) * self.nodes  # flat index of each tree's root
        node = offsets.unsqueeze(0).expand(rows, -1)
        for _ in range(self.depth):
            value = torch.gather(x, 1, self.feature[node].long())
            left = value <= self.threshold[node]
            member_row = self.member_row[node].long()
            code = value.long().clamp(0, self.categories - 1)
            is_member = self.members[member_row * self.categories + code].float() > 0
            categorical = member_row > 0  # (and/or, not where: ONNX Runtime has no Where over booleans)
            left = (categorical & is_member) | (~categorical & left)
            node = torch.where(left, self.left[node], self.right[node]).long()
        return self.leaf_value[node] @ self.output_of_tree


def float32_at_most(threshold: float) -> float:
    """The largest float32 <= threshold: `x <= t` then decides the same for every float32 x as in float64."""
    low = np.float32(threshold)
    # Compared as float64: numpy would compare a float32 with a Python float in float32, where they look equal.
    return float(np.nextafter(low, np.float32(-np.inf)) if float(low) > threshold else low)


class TreeArrays:
    """Flat node arrays of several trees being filled from LightGBM's JSON dump."""

    def __init__(self, trees: int, nodes: int, categories: int) -> None:
        size = trees * nodes
        self.nodes, self.categories = nodes, categories
        self.feature = np.zeros(size, np.int32)
        self.threshold = np.zeros(size, np.float32)
        self.left = np.arange(size, dtype=np.int32)  # a leaf points to itself
        self.right = np.arange(size, dtype=np.int32)
        self.leaf_value = np.zeros(size, np.float32)
        self.member_row = np.zeros(size, np.int32)
        self.members = [np.zeros(categories, np.uint8)]  # row 0: the empty set (numeric splits)
        self.depth = 0

    def add_tree(self, index: int, root: dict, n_numeric: int) -> None:
        base = index * self.nodes
        stack, slots = [(root, 0)], 1  # (node, its slot); slot 0 is the root
        while stack:
            node, slot = stack.pop()
            flat = base + slot
            if "leaf_value" in node:
                self.leaf_value[flat] = node["leaf_value"]
                continue
            self.feature[flat] = node["split_feature"]
            if node["decision_type"] == "==":
                member = np.zeros(self.categories, np.uint8)
                member[[int(c) for c in str(node["threshold"]).split("||")]] = 1.0
                self.member_row[flat] = len(self.members)
                self.members.append(member)
            else:
                self.threshold[flat] = float32_at_most(float(node["threshold"]))
            self.left[flat], self.right[flat] = base + slots, base + slots + 1
            stack += [(node["left_child"], slots), (node["right_child"], slots + 1)]
            slots += 2
        self.depth = max(self.depth, tree_depth(root))


def tree_depth(node: dict) -> int:
    if "leaf_value" in node:
        return 0
    return 1 + max(tree_depth(node["left_child"]), tree_depth(node["right_child"]))


def tree_size(node: dict) -> int:
    if "leaf_value" in node:
        return 1
    return 1 + tree_size(node["left_child"]) + tree_size(node["right_child"])


def load_trees(ensemble: TreeEnsemble, dump: dict, outputs_per_round: int) -> None:
    """Copy LightGBM's dumped trees (tree i adds to output i % outputs_per_round) into the module's buffers."""
    trees = [info["tree_structure"] for info in dump["tree_info"]]
    nodes = max((tree_size(tree) for tree in trees), default=1)
    categories = max(ensemble.categories, 2)
    arrays = TreeArrays(len(trees), nodes, categories)
    for index, tree in enumerate(trees):
        arrays.add_tree(index, tree, ensemble.n_numeric)
    output_of_tree = np.zeros((len(trees), ensemble.n_outputs), np.float32)
    # Binary classification: one tree per round, the raw score is the positive class's logit (the other's is 0).
    first = ensemble.n_outputs - outputs_per_round
    output_of_tree[np.arange(len(trees)), first + np.arange(len(trees)) % outputs_per_round] = 1.0
    ensemble.depth, ensemble.nodes, ensemble.categories = arrays.depth, nodes, categories
    for name in ("feature", "left", "right", "threshold", "leaf_value", "member_row"):
        setattr(ensemble, name, torch.from_numpy(getattr(arrays, name)))
    ensemble.members = torch.from_numpy(np.concatenate(arrays.members))
    ensemble.output_of_tree = torch.from_numpy(output_of_tree)


def objective(n_outputs: int, task: str) -> tuple[dict, int]:
    """LightGBM's objective and metrics for the task, and how many trees each round adds."""
    if task == "regression":
        return {"objective": "regression", "metric": ["l2"]}, 1
    if n_outputs == 2:
        return {"objective": "binary", "metric": ["binary_logloss", "binary_error"]}, 1
    return {"objective": "multiclass", "num_class": n_outputs, "metric": ["multi_logloss", "multi_error"]}, n_outputs


class TimeBudget:
    """A LightGBM callback that stops boosting when the fit's seconds are spent (the best round so far is kept)."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.order = 30  # after early stopping's callback

    def __call__(self, env) -> None:
        import lightgbm

        if self.deadline is not None and time.monotonic() > self.deadline:
            best = max(env.model.best_iteration, 1) if env.model.best_iteration > 0 else env.iteration + 1
            raise lightgbm.callback.EarlyStopException(best - 1, env.evaluation_result_list)


def round_history(evaluations: dict, task: str, validation_targets: np.ndarray) -> tuple[RoundMetrics, ...]:
    """Each round's losses and the validation metric, from LightGBM's recorded evaluations."""
    train, validation = evaluations["train"], evaluations["validation"]
    loss = next(iter(train))  # the first metric listed is the loss
    if task == "regression":
        variance = float(np.var(validation_targets)) or 1.0
        metric = [1.0 - mse / variance for mse in validation[loss]]
    else:
        error = next(name for name in validation if name.endswith("_error"))
        metric = [1.0 - e for e in validation[error]]
    return tuple(
        RoundMetrics(i + 1, float(t), float(v), float(m))
        for i, (t, v, m) in enumerate(zip(train[loss], validation[loss], metric, strict=True))
    )


def grow_booster(ensemble: TreeEnsemble, rows: TrainingRows, options: GradientBoostingOptions, task: str):
    """LightGBM trees boosted on the training rows with early stopping on the validation rows, and every round's
    evaluations."""
    import lightgbm  # imported where trees are grown: serving and the other families never need it

    settings, _ = objective(ensemble.n_outputs, task)
    categorical = list(range(ensemble.n_numeric, ensemble.n_numeric + ensemble.n_codes))
    params = settings | {
        "learning_rate": options.learning_rate,
        "num_leaves": options.num_leaves,
        "max_depth": options.max_depth,
        "min_child_samples": options.min_child_samples,
        "feature_fraction": options.feature_fraction,
        "lambda_l2": options.lambda_l2,
        "min_data_per_group": options.min_data_per_group,
        "max_cat_to_onehot": 8,
        "seed": rows.seed,
        "deterministic": True,
        "num_threads": torch.get_num_threads() or os.cpu_count() or 1,
        "verbosity": -1,
    }

    def dataset(part: tuple[np.ndarray, np.ndarray], targets: np.ndarray, reference=None):
        return lightgbm.Dataset(
            tree_inputs(part), targets, categorical_feature=categorical, reference=reference, free_raw_data=False
        )

    train = dataset(rows.train, rows.train_targets)
    validation = dataset(rows.validation, rows.validation_targets, reference=train)
    evaluations: dict = {}
    try:
        booster = lightgbm.train(
            params,
            train,
            num_boost_round=options.max_rounds,
            valid_sets=[train, validation],
            valid_names=["train", "validation"],
            callbacks=[
                lightgbm.early_stopping(options.early_stopping_rounds, first_metric_only=True, verbose=False),
                lightgbm.record_evaluation(evaluations),
                TimeBudget(rows.time_budget_s),
            ],
        )
    except lightgbm.basic.LightGBMError as error:
        raise GreenlightError(f"gradient_boosting could not grow trees on these rows: {error}") from error
    return booster, evaluations


def tree_inputs(part: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The numbers then the category codes, as the trees read them (TreeEnsemble.forward concatenates the same)."""
    return np.concatenate([part[0].astype(np.float32), part[1].astype(np.float32)], axis=1)


def fit(network: nn.Module, rows: TrainingRows, options: GradientBoostingOptions, task: str) -> DirectFit:
    """Boost on the training rows with early stopping on the validation rows; copy the trees into the network."""
    assert isinstance(network, TreeEnsemble)
    booster, evaluations = grow_booster(network, rows, options, task)
    best = booster.best_iteration or booster.current_iteration()
    network.categories = int(max(rows.train[1].max(initial=0), rows.validation[1].max(initial=0))) + 2
    load_trees(network, booster.dump_model(num_iteration=best), objective(network.n_outputs, task)[1])
    return DirectFit(best, round_history(evaluations, task, rows.validation_targets))


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    parse_options(GradientBoostingOptions, model.family, model.options)
    if inputs.text is not None or inputs.image_shape is not None:
        raise GreenlightError(
            "model family 'gradient_boosting' reads tables (numbers and categories): for a text or image feature "
            "use text_ngram / pretrained_encoder or image_cnn"
        )
    n_codes = len(inputs.categorical_cardinalities)
    return TreeEnsemble(inputs.numeric_width, n_codes, inputs.n_outputs)


def fit_family(network: nn.Module, rows: TrainingRows, model: ModelSpec, task: str) -> DirectFit:
    return fit(network, rows, parse_options(GradientBoostingOptions, model.family, model.options), task)


FAMILY = Family(
    name="gradient_boosting",
    build=build,
    # Rounds, not epochs: max_epochs / patience do not apply (options.max_rounds / early_stopping_rounds do).
    max_epochs=1,
    patience=1,
    summary="gradient-boosted trees (LightGBM) on numbers and categories, walked as one torch/ONNX graph",
    options=GradientBoostingOptions,
    fit=fit_family,
    # Nothing to prune or distil in a tree walk, and INT8 does not apply to its thresholds.
    compression="never",
)
