"""The real tables of the model tests as frames and reviewed specs (written out, not inferred, so these
tests do not depend on inference): wine, breast_cancer, diabetes from scikit-learn, palmerpenguins."""

import pandas as pd

from tasks.core.config import SplitConfig
from tasks.core.spec import DatasetSpec, FeatureSpec, ModelSpec, Spec, TargetSpec
from tasks.data.split import DataSplits, split_dataset


def sklearn_frame(name: str) -> pd.DataFrame:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    return bunch.frame


def penguins_frame() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


def numeric_features(frame: pd.DataFrame, exclude: str) -> list[FeatureSpec]:
    return [
        FeatureSpec(name=c, type="numeric", nullable=bool(frame[c].isna().any())) for c in frame.columns if c != exclude
    ]


def table_spec(name: str, frame: pd.DataFrame, target: str, family: str = "tabular_mlp", **model) -> Spec:
    """A spec for one of the four tables: every column numeric except penguins' island and sex."""
    if name == "penguins":
        features = [
            FeatureSpec(name="island", type="categorical", values=sorted(frame["island"].unique())),
            FeatureSpec(name="sex", type="categorical", nullable=True, values=["female", "male"]),
            *numeric_features(frame.drop(columns=["island", "sex"]), target),
        ]
    else:
        features = numeric_features(frame, target)
    if name == "diabetes":
        target_spec = TargetSpec(name=target, task="regression")
    else:
        target_spec = TargetSpec(name=target, task="classification", labels=sorted(frame[target].unique().tolist()))
    dataset = DatasetSpec(name=name, target=target_spec, features=features)
    return Spec(dataset=dataset, model=ModelSpec(family=family, **model))


TABLES = {
    "wine": (lambda: sklearn_frame("wine"), "target"),
    "breast_cancer": (lambda: sklearn_frame("breast_cancer"), "target"),
    "diabetes": (lambda: sklearn_frame("diabetes"), "target"),
    "penguins": (penguins_frame, "species"),
}


def table(name: str, seed: int = 42) -> tuple[Spec, DataSplits]:
    """A table's spec and its seeded train / validation / test split."""
    load, target = TABLES[name]
    frame = load()
    spec = table_spec(name, frame, target)
    return spec, split_dataset.fn(frame, spec.dataset, SplitConfig(seed=seed))
