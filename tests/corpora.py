"""Datasets written for the tests and benchmarks, with no download: product reviews, and digits as image files.

Reviews are generated from phrase lists with the things that make sentiment hard for word counts: negation
("not great"), mixed opinions whose verdict comes last, filler words shared by both classes, and 4% of labels
flipped (the noise any human-labelled set carries). Digits are scikit-learn's bundled 8x8 digits written as
PNG or JPEG files in one folder per class, grayscale or RGB, at any size.
"""

import random
from pathlib import Path

import numpy as np
import pandas as pd

POSITIVE = ["great", "excellent", "reliable", "comfortable", "sturdy", "fast", "beautiful", "quiet", "useful", "solid"]
NEGATIVE = ["terrible", "flimsy", "slow", "noisy", "useless", "ugly", "broken", "cheap", "awkward", "disappointing"]
THINGS = ["battery", "screen", "keyboard", "strap", "lid", "charger", "handle", "motor", "zipper", "lens", "sound"]
OPENERS = [
    "I bought this for my sister",
    "Arrived on Tuesday",
    "Second one I own",
    "Used it for a month",
    "Gift for my dad",
    "Picked it up on sale",
    "Replaced my old one with this",
    "Ordered the blue one",
]
FILLERS = [
    "to be honest",
    "as expected",
    "for the price",
    "after a few days",
    "compared to the last one",
    "in daily use",
    "so far",
    "overall",
]
VERDICTS = {
    "positive": ["Would buy again.", "Recommended.", "Five stars.", "Happy with it."],
    "negative": ["Returning it.", "Avoid.", "One star.", "Waste of money."],
}
LABEL_NOISE = 0.04


def opinion(rng: random.Random, good: bool) -> str:
    """'the battery is reliable', or the same meaning through negation: 'the battery is not flimsy'."""
    thing = rng.choice(THINGS)
    if rng.random() < 0.3:  # negation flips the word's usual class
        return f"the {thing} is not {rng.choice(NEGATIVE if good else POSITIVE)}"
    return f"the {thing} is {rng.choice(POSITIVE if good else NEGATIVE)}"


def review(rng: random.Random, label: str) -> str:
    good = label == "positive"
    parts = [rng.choice(OPENERS) + "."]
    if rng.random() < 0.35:  # mixed: a contrary remark first, the verdict after "but"
        parts.append(f"{opinion(rng, not good).capitalize()} {rng.choice(FILLERS)}, but {opinion(rng, good)}.")
    else:
        parts.append(f"{opinion(rng, good).capitalize()} {rng.choice(FILLERS)}.")
    if rng.random() < 0.6:
        parts.append(f"Also {opinion(rng, good)}.")
    parts.append(rng.choice(VERDICTS[label]) if rng.random() < 0.5 else "")
    return " ".join(p for p in parts if p)


def product_reviews(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Columns review (free text), channel (categorical: web / store / app) and sentiment (the target)."""
    rng = random.Random(seed)
    records = []
    for _ in range(rows):
        label = rng.choice(["positive", "negative"])
        text = review(rng, label)
        if rng.random() < LABEL_NOISE:
            label = "negative" if label == "positive" else "positive"
        records.append({"review": text, "channel": rng.choice(["web", "store", "app"]), "sentiment": label})
    return pd.DataFrame(records)


def digit_images(side: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 images [n, side, side] (0..16 scaled to 0..255) and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * (255 / 16)).round().astype(np.uint8)
    if side != 8:
        images = np.stack(
            [np.asarray(Image.fromarray(i).resize((side, side), Image.Resampling.BILINEAR)) for i in images]
        )
    return images, bunch.target


def write_digit_folders(
    root: Path, mode: str = "L", side: int = 8, per_class: int | None = None, suffix: str = ".png"
) -> Path:
    """Digits as image files in root/<digit>/<n>.png: grayscale ('L') or coloured ('RGB': the digit in a colour
    that varies by file, so channels matter), per_class files of each digit (all when None)."""
    from PIL import Image

    images, labels = digit_images(side)
    rng = np.random.default_rng(0)
    written: dict[int, int] = {}
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        if per_class is not None and written.get(int(label), 0) >= per_class:
            continue
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels, "L")
        if mode == "RGB":
            tint = rng.uniform(0.4, 1.0, size=3)
            image = Image.fromarray((pixels[:, :, None] * tint).round().astype(np.uint8), "RGB")
        image.save(folder / f"{index}{suffix}")
        written[int(label)] = written.get(int(label), 0) + 1
    return root
