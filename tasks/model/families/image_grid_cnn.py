"""image_grid_cnn: two 3x3 convolutions and a small head, for a spec's image grid (the bundled digits)."""

from pydantic import Field
from torch import Tensor, nn

from tasks.core.errors import ConfigRejected
from tasks.core.spec import ModelSpec
from tasks.model.families.contract import Family, FamilyOptions, InputDescription, parse_options


class ImageGridCNNOptions(FamilyOptions):
    """model.options of image_grid_cnn; the defaults are the digits CNN (98-99% test accuracy)."""

    conv_channels: tuple[int, int] = (32, 64)
    hidden: int = Field(128, ge=1)
    # Dropout before the head only: the convolutions share weights across the grid and overfit little.
    dropout: float = Field(0.25, ge=0.0, lt=1.0)


class ImageGridCNN(nn.Module):
    """conv-ReLU, conv-ReLU, 2x2 max-pool, then dropout-Linear-ReLU-Linear; takes the flat scaled grid."""

    def __init__(self, shape: tuple[int, int, int], n_outputs: int, options: ImageGridCNNOptions) -> None:
        super().__init__()
        channels, height, width = shape
        first, second = options.conv_channels
        self.shape = shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, first, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(first, second, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(options.dropout),
            nn.Linear(second * (height // 2) * (width // 2), options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, n_outputs),
        )

    def forward(self, numeric: Tensor, codes: Tensor) -> Tensor:
        channels, height, width = self.shape
        # The file's columns are row-major (height, width, channels); convolutions want channels first.
        images = numeric.reshape(-1, height, width, channels).permute(0, 3, 1, 2)
        return self.head(self.features(images))


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    options = parse_options(ImageGridCNNOptions, model.family, model.options)
    if inputs.image_shape is None:
        raise ConfigRejected(
            "model family 'image_grid_cnn' needs an image_grid feature in the spec; for a table use 'tabular_mlp'"
        )
    if min(inputs.image_shape[1:]) < 2:
        raise ConfigRejected(f"model family 'image_grid_cnn' needs a grid of at least 2x2, got {inputs.image_shape}")
    return ImageGridCNN(inputs.image_shape, inputs.n_outputs, options)


FAMILY = Family(
    name="image_grid_cnn",
    build=build,
    # The digits CNN's proven schedule: it reaches its best validation loss in 10-20 epochs.
    max_epochs=40,
    patience=6,
    summary="two 3x3 convolutions, max-pool and a small head over the image grid",
)
