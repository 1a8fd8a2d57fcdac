"""DANN training steps per second in PyTorch, the reference for benches/dann_steps.rs.

The same model (the DANN paper's MNIST CNN with a 100-2 domain head, 3x28x28 inputs), the same
loop (u8 images in memory, a shuffled index batch of 128 per domain, to float + per-channel
normalisation (channels-last with --channels-last), one feature pass over source+target, gradient reversal, three cross-entropies,
Adam 1e-3, the loss read back every step) and the same thread count as hwrun's step code.

usage: python dann_steps.py --threads N --steps S [--warmup W] [--batch B] [--channels-last]
prints one JSON line: {"steps_per_sec": ..., "threads": ...}
"""
import argparse
import json
import time
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

# The reference network and gradient reversal are the parity test's, so the benchmark times
# exactly the model that is checked against hwrun.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from parity_pytorch import Net, ReverseGradient  # noqa: E402


class Stream:
    """Shuffled index batches, reshuffled each pass, last partial batch dropped."""

    def __init__(self, n, batch, gen):
        self.n, self.batch, self.gen = n, batch, gen
        self.order, self.pos = torch.randperm(n, generator=gen), 0

    def next(self):
        if self.pos + self.batch > self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx


def domain_data(n, gen):
    images = torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    x = images.float() / 255
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    scale = (1 / (255 * std)).view(1, 3, 1, 1)
    shift = (-mean / std).view(1, 3, 1, 1)
    return images, labels, scale, shift


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--channels-last", action="store_true", help="feed the batches channels-last, as hwrun does")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n = 4096
    src_x, src_y, src_scale, src_shift = domain_data(n, gen)
    tgt_x, _, tgt_scale, tgt_shift = domain_data(n, gen)
    src_order, tgt_order = Stream(n, args.batch, gen), Stream(n, args.batch, gen)
    model = Net(with_domain=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    zeros = torch.zeros(args.batch, dtype=torch.long)
    ones = torch.ones(args.batch, dtype=torch.long)

    def step(lam):
        si, ti = src_order.next(), tgt_order.next()
        xs = src_x.index_select(0, si).float() * src_scale + src_shift
        ys = src_y.index_select(0, si)
        xt = tgt_x.index_select(0, ti).float() * tgt_scale + tgt_shift
        ns = xs.shape[0]
        x = torch.cat([xs, xt])
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = model.feature(x)
        class_logits = model.classifier(features[:ns])
        class_loss = F.cross_entropy(class_logits, ys)
        domain_logits = model.domain(ReverseGradient.apply(features, lam))
        domain_loss = F.cross_entropy(domain_logits[:ns], zeros) + F.cross_entropy(domain_logits[ns:], ones)
        loss = class_loss + domain_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        correct = (class_logits.argmax(-1) == ys).sum()
        return torch.stack([loss.detach(), class_loss.detach(), domain_loss.detach(), correct.double()]).tolist()

    for _ in range(args.warmup):
        step(0.5)
    start = time.perf_counter()
    for _ in range(args.steps):
        step(0.5)
    elapsed = time.perf_counter() - start
    print(json.dumps({"steps_per_sec": args.steps / elapsed, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
