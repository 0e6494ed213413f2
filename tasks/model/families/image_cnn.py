"""image_cnn: 3x3 convolution stages and a small head, for any image input size and channel count.

The bundled digits (an 8x8 grid) are one configuration of it: two stages at full resolution, one 2x2 max-pool,
the head, as before. Larger images are halved after each stage until they reach `grid` cells a side, and the
last feature map is averaged down to at most 4x4, so a 224x224 photo does not turn the head into 100M weights.
"""

from pydantic import Field
from torch import Tensor, nn

from tasks.core.errors import ConfigRejected
from tasks.core.spec import ModelSpec
from tasks.model.families.contract import Family, FamilyOptions, InputDescription, parse_options

# The head reads at most HEAD_CELLS x HEAD_CELLS positions per channel (digits: 4x4 after the pool).
HEAD_CELLS = 4


class ImageCNNOptions(FamilyOptions):
    """model.options of image_cnn; the defaults are the digits CNN (98-99% test accuracy)."""

    conv_channels: tuple[int, ...] = Field((32, 64), min_length=1, max_length=8)
    # A stage is halved (2x2 max-pool) while the map is larger than this many cells a side: 8 keeps the
    # digits' 8x8 grid whole and brings a 64x64 photo to 8x8 in three stages.
    grid: int = Field(8, ge=2)
    hidden: int = Field(128, ge=1)
    # Dropout before the head only: the convolutions share weights across the grid and overfit little.
    dropout: float = Field(0.25, ge=0.0, lt=1.0)


class ImageCNN(nn.Module):
    """[conv-ReLU (pool while large)] per stage, 2x2 max-pool, average to <= 4x4, dropout-Linear-ReLU-Linear."""

    def __init__(self, shape: tuple[int, int, int], n_outputs: int, options: ImageCNNOptions) -> None:
        super().__init__()
        channels, height, width = shape
        self.shape = shape
        layers: list[nn.Module] = []
        for out in options.conv_channels:
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU()]
            channels = out
            if min(height, width) > options.grid:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
        layers.append(nn.MaxPool2d(2))  # digits: 8x8 -> 4x4
        height, width = height // 2, width // 2
        cells = (min(height, HEAD_CELLS), min(width, HEAD_CELLS))
        if (height, width) != cells:
            layers.append(nn.AdaptiveAvgPool2d(cells))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(options.dropout),
            nn.Linear(channels * cells[0] * cells[1], options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, n_outputs),
        )

    def forward(self, numeric: Tensor, codes: Tensor) -> Tensor:
        channels, height, width = self.shape
        # The inputs are row-major (height, width, channels); convolutions want channels first.
        images = numeric.reshape(-1, height, width, channels).permute(0, 3, 1, 2)
        return self.head(self.features(images))


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    options = parse_options(ImageCNNOptions, model.family, model.options)
    if inputs.image_shape is None:
        raise ConfigRejected(
            f"model family '{model.family}' needs an image or image_grid feature in the spec; for a table use"
            " 'tabular_mlp', for text 'pretrained_encoder' or 'text_transformer'"
        )
    if min(inputs.image_shape[1:]) < 2:
        raise ConfigRejected(f"model family '{model.family}' needs an image of at least 2x2, got {inputs.image_shape}")
    return ImageCNN(inputs.image_shape, inputs.n_outputs, options)


def student(teacher: ModelSpec) -> ModelSpec:
    """The distilled student: a quarter of the teacher's channels and head ((32, 64) / 128 -> (8, 16) / 32)."""
    options = parse_options(ImageCNNOptions, teacher.family, teacher.options)
    narrower = {"conv_channels": [max(4, c // 4) for c in options.conv_channels], "hidden": max(8, options.hidden // 4)}
    return ModelSpec(family="image_cnn", options={**teacher.options, **narrower})


FAMILY = Family(
    name="image_cnn",
    build=build,
    # The digits CNN's proven schedule: it reaches its best validation loss in 10-20 epochs.
    max_epochs=40,
    patience=6,
    summary="3x3 convolution stages, max-pools and a small head over the image (any size and channels)",
    student=student,
    options=ImageCNNOptions,
    # A pruned or distilled CNN is often as accurate and several times faster (benchmarks/inference_ladder.py).
    compression="always",
)
# The name the digits CNN had before it took any image size; specs written with it still train.
GRID_ALIAS = Family(
    name="image_grid_cnn",
    build=build,
    max_epochs=40,
    patience=6,
    summary="the former name of image_cnn",
    student=student,
    options=ImageCNNOptions,
    compression="always",
)
