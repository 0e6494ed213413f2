"""Model families: a registry of name -> Family; adding a family is adding one file here and one line below.

Every family builds only the network (see contract.py for what it receives and returns); the learned
preprocessing and the output layer around it are the same for all (tasks.model.network).
"""

from torch import nn

from tasks.core.errors import ConfigRejected
from tasks.core.spec import ModelSpec
from tasks.model.families import (
    custom,
    ensemble,
    gradient_boosting,
    image_cnn,
    pretrained_encoder,
    tabular_mlp,
    text_ngram,
    text_transformer,
)
from tasks.model.families.contract import Family, InputDescription, TextDescription

# Not a family: the training stage trains the spec's candidate families and serves the best (tasks.model.selection).
AUTO_FAMILY = "auto"

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        tabular_mlp.FAMILY,
        gradient_boosting.FAMILY,
        image_cnn.FAMILY,
        text_transformer.FAMILY,
        pretrained_encoder.FAMILY,
        text_ngram.FAMILY,
        custom.FAMILY,
        ensemble.FAMILY,
        image_cnn.GRID_ALIAS,
    )
}


def get_family(name: str) -> Family:
    """The registered family of that name; an unknown name is refused with the known ones."""
    if name == AUTO_FAMILY:
        raise ConfigRejected(
            "model.family 'auto' is decided by training its candidate families (the pipeline's training stage); "
            "name one family here (gradient_boosting, tabular_mlp, ...)"
        )
    if name not in FAMILIES:
        known = "; ".join(f"{f.name} ({f.summary})" for f in FAMILIES.values())
        raise ConfigRejected(f"unknown model family '{name}' in model.family; choose one of: {known}")
    return FAMILIES[name]


def build_network(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    """The spec's family's network for these inputs (options checked by the family)."""
    return get_family(model.family).build(model, inputs)


__all__ = ["AUTO_FAMILY", "FAMILIES", "Family", "InputDescription", "TextDescription", "build_network", "get_family"]
