"""Builds PyTorch modules from the text `print(model)` printed, and reports what PyTorch says
of them: the oracle of tests/network.rs.

Each module line `(name): Layer(args)` is evaluated as the constructor call `nn.Layer(args)`;
a line ending in `Name(` opens a container (`nn.Sequential`, or an empty `nn.Module` subclass
named `Name`, which prints the same) closed by a lone `)`. PyTorch 1.x spellings evaluate too:
`ReLU(inplace)` is `nn.ReLU(True)` and `GELU(approximate=none)` reads `none` as 'none'.

Usage: python network.py FILE[:CxHxW] ...
Prints a JSON list, one object per file: `print` (str(model) in this torch), `params`
(sum of numel over parameters()), `state_dict` ([name, shape] in order) and, with an input
shape, `output`: the eval-mode output shape of one sample run through the leaf modules in
order, flattening an image before a Linear that reads C*H*W features and viewing a vector as a
square image before a conv that needs it (the reshapes student code does in forward).

Usage: python network.py --spectral FILE ...
The same report after `torch.nn.utils.spectral_norm` (hook style) on every conv and linear
layer, which the printout does not show.

Usage: python network.py --forward DIR FILE:CxHxW ...
Gives each network seeded random weights (and running statistics), saves its state_dict with
torch.save as DIR/<file stem>.pt, and a batch of 2 inputs `x` with the eval-mode outputs `y`
as DIR/<file stem>.safetensors.
"""

import os


import json
import math
import re
import sys

import torch
from torch import nn

# Bare words of older printouts, and Python's constants.
NAMESPACE = {"nn": nn, "inplace": True, "none": "none"}
CHILD = re.compile(r"^\((?P<name>[^)]*)\): (?P<module>.*)$")
CALL = re.compile(r"^(?P<cls>[A-Za-z_][A-Za-z0-9_]*)\((?P<rest>.*)$")


def module(text, lines, position):
    """The module written as `text`; `lines[position:]` follow it. Returns (module, position)."""
    call = CALL.match(text)
    cls, rest = call["cls"], call["rest"]
    if rest != "":
        return eval(f"nn.{cls}({rest}", NAMESPACE), position
    if cls == "Sequential":
        container = nn.Sequential()
    else:
        container = type(cls, (nn.Module,), {})()
    while True:
        line = lines[position].strip()
        position += 1
        if line == ")":
            return container, position
        child = CHILD.match(line)
        built, position = module(child["module"], lines, position)
        container.add_module(child["name"], built)


def build(text):
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    built, _ = module(lines[0].strip(), lines, 1)
    return built


def leaves(model):
    return [m for m in model.modules() if len(list(m.children())) == 0]


def run(model, x):
    """The eval-mode forward of the leaf modules in order, with the reshapes of forward code."""
    model.eval()
    with torch.no_grad():
        for layer in leaves(model):
            if isinstance(layer, nn.Linear) and x.dim() > 2 and x[0].numel() == layer.in_features:
                x = x.flatten(1)
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and x.dim() == 2:
                side = math.isqrt(x.shape[1] // layer.in_channels)
                x = x.view(x.shape[0], layer.in_channels, side, side)
            x = layer(x)
    return x


def output_shape(model, shape):
    return list(run(model, torch.zeros(1, *shape)).shape[1:])


def save_forward(directory, argument):
    from safetensors.torch import save_file

    path, _, shape = argument.partition(":")
    with open(path) as file:
        model = build(file.read())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
        # Norm weights start at 1 and biases at 0: make them count.
        for module in model.modules():
            if "Norm" in type(module).__name__:
                for parameter in module.parameters(recurse=False):
                    parameter.add_(torch.randn_like(parameter) * 0.1)
    x = torch.randn(2, *[int(d) for d in shape.split("x")])
    y = run(model, x)
    stem = os.path.join(directory, os.path.splitext(os.path.basename(path))[0])
    torch.save(model.state_dict(), stem + ".pt")
    save_file({"x": x.contiguous(), "y": y.contiguous()}, stem + ".safetensors")


def describe(argument, spectral=False):
    path, _, shape = argument.partition(":")
    with open(path) as file:
        model = build(file.read())
    if spectral:
        for module in list(model.modules()):
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.utils.spectral_norm(module)
    report = {
        "print": str(model),
        "params": sum(p.numel() for p in model.parameters()),
        "state_dict": [[name, list(t.shape)] for name, t in model.state_dict().items()],
    }
    if shape:
        report["output"] = output_shape(model, [int(d) for d in shape.split("x")])
    return report


if __name__ == "__main__":
    if sys.argv[1] == "--forward":
        for argument in sys.argv[3:]:
            save_forward(sys.argv[2], argument)
    elif sys.argv[1] == "--spectral":
        print(json.dumps([describe(argument, spectral=True) for argument in sys.argv[2:]]))
    else:
        print(json.dumps([describe(argument) for argument in sys.argv[1:]]))
