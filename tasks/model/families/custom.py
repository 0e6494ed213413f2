"""custom: the user's own network, named in the spec as model.custom = 'package.module:function'.

The function gets an InputDescription and returns a torch.nn.Module following contract.py; it is wrapped in the
same preprocessing and goes through the same export, parity and gate as the built-in families.
"""

import importlib

import torch
from torch import nn

from tasks.core.errors import ConfigRejected
from tasks.core.spec import ModelSpec
from tasks.model.families.contract import Family, InputDescription

PROBE_ROWS = 3


def resolve_builder(reference: str):
    """The function a 'module:function' reference names; refused with what is wrong and what to do."""
    module_name, _, function_name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure of user code is a configuration problem
        raise ConfigRejected(
            f"custom model '{reference}': module '{module_name}' could not be imported ({type(error).__name__}: "
            f"{error}); check the name and that it is on PYTHONPATH"
        ) from error
    builder = getattr(module, function_name, None)
    if not callable(builder):
        raise ConfigRejected(f"custom model '{reference}': module '{module_name}' has no function '{function_name}'")
    return builder


def probe_inputs(inputs: InputDescription) -> tuple[torch.Tensor, ...]:
    """A few rows shaped like the real inputs: zeros, every categorical as 'missing' (a valid code), and for a
    text spec 8 tokens of [CLS]-like id 1 with a full mask."""
    numeric = torch.zeros(PROBE_ROWS, inputs.numeric_width)
    codes = torch.ones(PROBE_ROWS, len(inputs.categorical_cardinalities), dtype=torch.int64)
    if inputs.text is None:
        return numeric, codes
    tokens = torch.ones(PROBE_ROWS, 8, dtype=torch.int64)
    return numeric, codes, tokens, torch.ones_like(tokens)


def check_output(reference: str, network: nn.Module, inputs: InputDescription) -> None:
    """Run the network once on probe rows; refuse a failure or an output of the wrong shape."""
    allowed = [(PROBE_ROWS, inputs.n_outputs)] + ([(PROBE_ROWS,)] if inputs.n_outputs == 1 else [])
    try:
        with torch.no_grad():
            output = network.eval()(*probe_inputs(inputs))
    except Exception as error:
        raise ConfigRejected(
            f"custom model '{reference}' failed on a probe batch (numeric [{PROBE_ROWS}, {inputs.numeric_width}], "
            f"codes [{PROBE_ROWS}, {len(inputs.categorical_cardinalities)}]): {type(error).__name__}: {error}"
        ) from error
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    if shape not in allowed:
        got = f"shape {list(shape)}" if shape is not None else f"a {type(output).__name__}"
        raise ConfigRejected(
            f"custom model '{reference}' returned {got} for {PROBE_ROWS} rows; expected {list(allowed[0])} "
            f"({inputs.task}, {inputs.n_outputs} output(s) per row)"
        )


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    reference = model.custom or ""
    builder = resolve_builder(reference)
    try:
        network = builder(inputs)
    except Exception as error:
        raise ConfigRejected(f"custom model '{reference}' raised {type(error).__name__}: {error}") from error
    if not isinstance(network, nn.Module):
        raise ConfigRejected(
            f"custom model '{reference}' returned a {type(network).__name__}; it must return a torch.nn.Module"
        )
    check_output(reference, network, inputs)
    return network.train()


FAMILY = Family(
    name="custom",
    build=build,
    # Unknown networks: the tabular defaults, which early stopping cuts short where they are too many.
    max_epochs=300,
    patience=25,
    summary="your own torch.nn.Module from model.custom = 'module:function'",
)
