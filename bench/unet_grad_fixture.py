#!/usr/bin/env python3
"""Writes the PyTorch gradient fixture that `crates/libs/unet/tests/torch_gradients.rs` reproduces: one
training step's loss, parameter gradients and updated batch-norm running statistics for a small
U-Net, with the architecture and loss of `bench/unet_torch.py` (which mirrors `crates/libs/unet`).

The network is small enough for a committed file and shaped to reach the kernels' edge cases:
depth 2, base 3 (odd channel counts 3, 6, 12), batch 2, 24 x 24 inputs (576 pixels per image, more
than one 512-pixel im2col band), batch norm in training mode, two output channels.

The file holds, in PyTorch's `state_dict` order (which is the order burn visits the same modules'
tensors: conv weight; batch norm gamma, beta, running mean, running variance; transposed conv weight
and bias; head weight and bias), every tensor's values before the step, the gradient of each
trainable one and the running statistics after the forward pass (with the number of values each
batch norm averaged); and the input, target and loss.
Values are written with 9 significant digits (an f32 reads back exactly).

Usage (regenerate only when the model or loss changes on purpose):
  /tmp/torchvenv/bin/python bench/unet_grad_fixture.py > crates/libs/unet/tests/data/torch_unet_step.json
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_torch import UNet, loss_fn  # noqa: E402

CONFIG = {
    "in_channels": 1,
    "out_channels": 2,
    "depth": 2,
    "base": 3,
    "norm": "batch",
    "batch": 2,
    "size": 24,
    "seed": 14,
}


def numbers(t: torch.Tensor) -> list:
    return [float(f"{v:.9g}") for v in t.detach().reshape(-1).tolist()]


def main() -> None:
    c = CONFIG
    torch.manual_seed(c["seed"])
    torch.set_num_threads(1)
    model = UNet(c["in_channels"], c["out_channels"], c["depth"], c["base"], c["norm"]).train()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    g = torch.Generator().manual_seed(c["seed"])
    shape = (c["batch"], c["in_channels"], c["size"], c["size"])
    x = torch.randn(*shape, generator=g)
    y = (torch.rand(c["batch"], c["out_channels"], c["size"], c["size"], generator=g) < 0.3).float()

    # Values each batch norm averages per channel (batch x height x width of its input): PyTorch
    # updates the running variance with the unbiased batch variance (n / (n - 1)), burn with the
    # biased one, and the test converts with this count.
    counts = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            def hook(m, inputs, _out, name=name):
                n, _, h, w = inputs[0].shape
                counts[name] = n * h * w
            module.register_forward_hook(hook)

    loss = loss_fn(model(x), y)
    loss.backward()

    params = dict(model.named_parameters())
    after = model.state_dict()
    tensors = []
    for name, value in before.items():
        if name.endswith("num_batches_tracked"):
            continue
        entry = {"name": name, "shape": list(value.shape), "value": numbers(value)}
        if name in params:
            entry["grad"] = numbers(params[name].grad)
        else:
            entry["after"] = numbers(after[name])
            entry["count"] = counts[name.rsplit(".", 1)[0]]
        tensors.append(entry)

    out = {
        "generator": "bench/unet_grad_fixture.py",
        "torch": torch.__version__,
        "config": c,
        "input": numbers(x),
        "target": [int(v) for v in y.reshape(-1).tolist()],
        "loss": float(f"{loss.item():.9g}"),
        "tensors": tensors,
    }
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
