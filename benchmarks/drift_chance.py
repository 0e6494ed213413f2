"""What drift scores by chance alone, per table: the figures DriftConfig's thresholds are set against.

Each draw resamples a table (with replacement, as a fresh sample of the same population) and scores its
PSI against the whole table's summary, through the same code the pipeline runs (tasks.data.drift). Prints
the median and 95th percentile of the largest feature PSI and of the target PSI, then a few real changes.

    PYTHONPATH=. python benchmarks/drift_chance.py [--draws 200]
"""

import argparse

import numpy as np
import pandas as pd

from tasks.core.config import DriftConfig
from tasks.core.spec import DatasetSpec, digits_frame, digits_spec
from tasks.data.drift import DriftReference, score_drift, summarize
from tasks.data.infer import infer_spec


def tables() -> dict[str, tuple[pd.DataFrame, DatasetSpec]]:
    """The real tables: wine (numeric), penguins (numeric + categorical + NaNs), the bundled digits."""
    import palmerpenguins
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame
    penguins = palmerpenguins.load_penguins()
    return {
        "wine": (wine, infer_spec(wine, "target")[0].dataset),
        "penguins": (penguins, infer_spec(penguins, "species")[0].dataset),
        "digits": (digits_frame(), digits_spec().dataset),
    }


def scores(frame: pd.DataFrame, spec: DatasetSpec, reference: DriftReference) -> tuple[float, float]:
    """(largest feature PSI, target PSI) of a frame against the reference."""
    report = score_drift(frame, spec, reference, DriftConfig())
    return report.max_feature_psi, report.label_psi


def chance(frame: pd.DataFrame, spec: DatasetSpec, rows: int, draws: int) -> str:
    reference = DriftReference("1", summarize(frame, "0" * 64, spec), "the whole table")
    found = np.array(
        [scores(frame.sample(rows, replace=True, random_state=seed), spec, reference) for seed in range(draws)]
    )
    feature, target = np.median(found, axis=0), np.quantile(found, 0.95, axis=0)
    return (
        f"{rows:>4} rows: largest feature PSI {feature[0]:.3f} / {target[0]:.3f},"
        f" target PSI {feature[1]:.3f} / {target[1]:.3f} (median / 95th percentile)"
    )


def real_changes(found: dict[str, tuple[pd.DataFrame, DatasetSpec]]) -> list[str]:
    """Changes a person would want flagged, scored the same way."""
    wine, wine_spec = found["wine"]
    penguins, penguins_spec = found["penguins"]
    shifted = wine.assign(alcohol=wine["alcohol"] + wine["alcohol"].std())
    new_island = penguins.copy()
    new_island.loc[new_island.sample(frac=0.1, random_state=0).index, "island"] = "Anvers"
    no_gentoo = penguins[penguins["species"] != "Gentoo"]
    cases = [
        ("wine, alcohol + 1 standard deviation", shifted, wine, wine_spec),
        ("penguins, 10% of rows on an unseen island", new_island, penguins, penguins_spec),
        ("penguins, no Gentoo rows (target)", no_gentoo, penguins, penguins_spec),
    ]
    lines = []
    for name, changed, whole, spec in cases:
        report = score_drift(changed, spec, DriftReference("1", summarize(whole, "0" * 64, spec), "x"), DriftConfig())
        lines.append(f"{name}: {report.top_text()}; target PSI {report.label_psi:.3f} -> {report.status}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    found = tables()
    for name, (frame, spec) in found.items():
        for rows in (100, 300, 900):
            print(f"{name:>8} {chance(frame, spec, rows, args.draws)}")
    for line in real_changes(found):
        print(line)


if __name__ == "__main__":
    main()
