"""PyTorch oracle for tests/parity_pytorch.rs.

Builds the same digit CNN as hwrun (names as in hwrun's safetensors), loads hwrun's weights and
batch, runs one forward/backward and prints the largest absolute differences from hwrun's logits,
loss and weight gradients as JSON. Modes:

- classifier, dann: the DANN paper's MNIST preset, one classifier or DANN step;
- bn: the `dann_bn` preset (the PyTorch port's network) in eval mode (running statistics, no
  dropout), then one training-mode pass of the feature extractor whose batch-norm running
  statistics (both layers come before its dropout) are compared (`stats`).

usage: python parity_pytorch.py MODE DIR   (DIR holds weights.safetensors, batch.safetensors and
       rust.safetensors written by the Rust test)
"""
import json
from collections import OrderedDict
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.neg() * ctx.lam, None


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers.append((f"fc{i}", nn.Linear(a, b)))
        if i < len(sizes) - 1:
            layers.append((f"relu{i}", nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


class Net(nn.Module):
    def __init__(self, with_domain):
        super().__init__()
        self.feature = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 32, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2, 2)),
            ("conv2", nn.Conv2d(32, 48, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2, 2)),
            ("flatten", nn.Flatten()),
        ]))
        self.classifier = mlp([768, 100, 100, 10])
        if with_domain:
            self.domain = mlp([768, 100, 2])


class BnNet(nn.Module):
    """fungtion/DANN's CNN, with hwrun's layer names."""

    def __init__(self):
        super().__init__()
        self.feature = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 64, 5)), ("bn1", nn.BatchNorm2d(64)), ("pool1", nn.MaxPool2d(2)),
            ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(64, 50, 5)), ("bn2", nn.BatchNorm2d(50)),
            ("drop1", nn.Dropout2d()), ("pool2", nn.MaxPool2d(2)), ("relu2", nn.ReLU()),
            ("flatten", nn.Flatten()),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(800, 100)), ("bn1", nn.BatchNorm1d(100)), ("relu1", nn.ReLU()),
            ("drop1", nn.Dropout()), ("fc2", nn.Linear(100, 100)), ("bn2", nn.BatchNorm1d(100)),
            ("relu2", nn.ReLU()), ("fc3", nn.Linear(100, 10)),
        ]))


def bn_stats_diff(net, x, rust):
    """Largest difference of the running statistics after one training-mode pass."""
    net.train()
    with torch.no_grad():
        net.feature(x)
    state = net.state_dict()
    diff = 0.0
    for name in ["feature.bn1", "feature.bn2"]:
        for buffer in ["running_mean", "running_var", "num_batches_tracked"]:
            key = f"{name}.{buffer}"
            diff = max(diff, (state[key].double() - rust[f"after.{key}"].double()).abs().max().item())
    return diff


def main():
    mode, root = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    net = BnNet() if mode == "bn" else Net(mode == "dann")
    net.load_state_dict(load_file(f"{root}/weights.safetensors"), strict=True)
    batch = load_file(f"{root}/batch.safetensors")
    rust = load_file(f"{root}/rust.safetensors")
    x, y = batch["source"], batch["labels"]
    if mode == "bn":
        net.eval()
        logits = net.classifier(net.feature(x))
        loss = F.cross_entropy(logits, y)
    elif mode == "classifier":
        logits = net.classifier(net.feature(x))
        loss = F.cross_entropy(logits, y)
    else:
        xt = batch["target"]
        ns = x.shape[0]
        features = net.feature(torch.cat([x, xt]))
        logits = net.classifier(features[:ns])
        domain = net.domain(ReverseGradient.apply(features, float(batch["lambda"])))
        loss = (F.cross_entropy(logits, y)
                + F.cross_entropy(domain[:ns], torch.zeros(ns, dtype=torch.long))
                + F.cross_entropy(domain[ns:], torch.ones(xt.shape[0], dtype=torch.long)))
    loss.backward()
    diffs = {
        "logits": (logits.detach() - rust["logits"]).abs().max().item(),
        "loss": abs(loss.item() - rust["loss"].item()),
    }
    grads = {}
    for name, p in net.named_parameters():
        grads[name] = (p.grad - rust[f"grad.{name}"]).abs().max().item()
    diffs["grad_max"] = max(grads.values())
    diffs["grad_worst"] = max(grads, key=grads.get)
    diffs["grad_count"] = len(grads)
    if mode == "bn":
        diffs["stats"] = bn_stats_diff(net, x, rust)
    print(json.dumps(diffs))


if __name__ == "__main__":
    main()
