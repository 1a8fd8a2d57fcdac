"""The reference training loop hwrun's `train_dann` is compared with: the semantics of the popular
PyTorch DANN port (fungtion/DANN_py3), written anew here.

- Its CNN: conv(3,64,5) BN maxpool ReLU, conv(64,50,5) BN Dropout2d maxpool ReLU -> 800 features;
  label head fc 100 BN ReLU Dropout fc 100 BN ReLU fc 10; domain head fc 100 BN ReLU fc 2, behind a
  gradient reversal layer.
- Inputs normalised with fixed constants (MNIST mean 0.1307 / std 0.3081, other domains 0.5 / 0.5),
  greyscale repeated to RGB, resized to 28x28. `--input-norm per_domain` instead normalises each
  domain by its training set's per-channel mean and std, as hwrun does (for the ablation).
- Adam lr 1e-3, constant; batch 128 per domain; lambda_p = 2 / (1 + exp(-10 p)) - 1.
- Each step: one forward pass of the source batch (class loss + domain loss, label 0), then one of
  the target batch (domain loss, label 1), so every batch-norm batch holds one domain; one
  backward of the sum and one optimizer step. The target's pass goes through the label head
  too (its output unused, its batch-norm statistics updated); `--no-target-label-head` skips it.
- Source only / target only: the same network and loop with the class loss only.
- The number of steps is hwrun's: an epoch is one pass (partial batch dropped) over the labelled
  training set; the target stream restarts with a fresh shuffle when it runs out.
- After every epoch the label path is evaluated (eval mode, lambda 0) on the target's val images.

    python dann_port.py --data DIR --source mnist --target mnistm --method dann --out result.json
"""

import argparse
import csv
import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

NORMALISATION = {"mnist": (0.1307, 0.3081)}
DEFAULT_NORMALISATION = (0.5, 0.5)


@functools.lru_cache(maxsize=None)
def read(root, domain, split):
    """f32 [N, 3, 28, 28] in [0, 1] and labels [N] of `root/digits/domain/split.csv`."""
    folder = Path(root) / "digits" / domain
    with open(folder / f"{split}.csv") as f:
        rows = list(csv.DictReader(f))
    images = []
    for row in rows:
        image = Image.open(folder / "data" / row["image_name"]).convert("RGB")
        if image.size != (28, 28):
            image = image.resize((28, 28), Image.BILINEAR)
        images.append(np.asarray(image))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.tensor([int(row["label"]) for row in rows])


def load(root, domain, split, input_norm):
    """Normalised images and labels of one split (`input_norm`: "fixed" or "per_domain")."""
    x, y = read(root, domain, split)
    if input_norm == "per_domain":
        train = x if split == "train" else read(root, domain, "train")[0]
        mean, std = train.mean(dim=(0, 2, 3), keepdim=True), train.std(dim=(0, 2, 3), keepdim=True)
    else:
        mean, std = NORMALISATION.get(domain, DEFAULT_NORMALISATION)
    return (x - mean) / std, y


class ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


class PortCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.feature = nn.Sequential(
            nn.Conv2d(3, 64, 5), nn.BatchNorm2d(64), nn.MaxPool2d(2), nn.ReLU(True),
            nn.Conv2d(64, 50, 5), nn.BatchNorm2d(50), nn.Dropout2d(), nn.MaxPool2d(2), nn.ReLU(True),
        )
        self.classifier = nn.Sequential(
            nn.Linear(800, 100), nn.BatchNorm1d(100), nn.ReLU(True), nn.Dropout(),
            nn.Linear(100, 100), nn.BatchNorm1d(100), nn.ReLU(True), nn.Linear(100, 10),
        )
        self.domain = nn.Sequential(
            nn.Linear(800, 100), nn.BatchNorm1d(100), nn.ReLU(True), nn.Linear(100, 2),
        )

    def forward(self, x, weight):
        features = self.feature(x).flatten(1)
        return self.classifier(features), self.domain(ReverseGradient.apply(features, weight))


class Stream:
    """Endless shuffled batches of indices; a partial batch at the end of a pass is dropped."""

    def __init__(self, n, batch, generator):
        self.n, self.batch, self.generator = n, batch, generator
        self.order, self.position = torch.randperm(n, generator=generator), 0

    def next(self):
        if self.position + self.batch > self.n:
            self.order, self.position = torch.randperm(self.n, generator=self.generator), 0
        index = self.order[self.position : self.position + self.batch]
        self.position += self.batch
        return index


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    correct = sum(
        (model(x[i : i + 512], 0.0)[0].argmax(1) == y[i : i + 512]).sum().item()
        for i in range(0, len(x), 512)
    )
    model.train()
    return correct / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--method", choices=["source_only", "dann", "target_only"], required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input-norm", choices=["fixed", "per_domain"], default="fixed")
    parser.add_argument("--no-target-label-head", dest="target_label_head", action="store_false",
                        help="the target batch skips the label head (hwrun's default pass)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)

    labelled = args.target if args.method == "target_only" else args.source
    xs, ys = load(args.data, labelled, "train", args.input_norm)
    xt, _ = load(args.data, args.target, "train", args.input_norm)
    xv, yv = load(args.data, args.target, "val", args.input_norm)
    batch = min(args.batch, len(xs), len(xt))
    model = PortCnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    source, target = Stream(len(xs), batch, generator), Stream(len(xt), batch, generator)
    steps = len(xs) // batch
    curve, started = [], time.time()
    for epoch in range(args.epochs):
        for i in range(steps):
            p = (i + epoch * steps) / (args.epochs * steps)
            weight = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
            index = source.next()
            class_logits, domain_logits = model(xs[index], weight)
            loss = nn.functional.cross_entropy(class_logits, ys[index])
            if args.method == "dann":
                zeros = torch.zeros(len(index), dtype=torch.long)
                loss = loss + nn.functional.cross_entropy(domain_logits, zeros)
                if args.target_label_head:
                    _, target_domain = model(xt[target.next()], weight)
                else:
                    features = model.feature(xt[target.next()]).flatten(1)
                    target_domain = model.domain(ReverseGradient.apply(features, weight))
                ones = torch.ones(len(target_domain), dtype=torch.long)
                loss = loss + nn.functional.cross_entropy(target_domain, ones)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        curve.append(accuracy(model, xv, yv))
        print(f"{args.method} {args.source}->{args.target} epoch {epoch + 1}: val_acc {curve[-1]:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "method": args.method,
                "source": args.source,
                "target": args.target,
                "seed": args.seed,
                "input_norm": args.input_norm,
                "target_label_head": args.target_label_head,
                "steps_per_epoch": steps,
                "val_acc": curve,
                "seconds": time.time() - started,
            }
        )
    )


if __name__ == "__main__":
    main()
