"""DCGAN training steps per second in PyTorch, the reference for benches/gan_step.rs.

The tutorial's networks (the parity test's `generator` and `discriminator`, 64x64, z 100,
ngf = ndf = 64, weights N(0, 0.02) / BatchNorm N(1, 0.02)) and its loop: u8 images in memory, a
shuffled index batch of 128, to float in [-1, 1]; D step on real (label 1) and the detached fake
(label 0) with BCE; G step on the same fake with label 1; Adam 2e-4 betas (0.5, 0.999) for both;
the losses and mean D outputs read back every step, at the thread count hwrun uses.

usage: python gan_step.py --threads N --steps S [--warmup W] [--batch B]
prints one JSON line: {"steps_per_sec": ..., "threads": ...}
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from parity_gan import discriminator, generator  # noqa: E402


def weights_init(m):
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, nz, b = 512, 100, args.batch
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
    net_g, net_d = generator(nz, 64, 3), discriminator(64, 3)
    net_g.apply(weights_init)
    net_d.apply(weights_init)
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = nn.BCELoss()
    real_label, fake_label = torch.full((b,), 1.0), torch.full((b,), 0.0)
    order, pos = torch.randperm(n), 0

    def step():
        nonlocal order, pos
        if pos + b > n:
            order, pos = torch.randperm(n), 0
        idx = order[pos:pos + b]
        pos += b
        real = images.index_select(0, idx).float() / 127.5 - 1.0
        net_d.zero_grad()
        out_real = net_d(real).view(-1)
        err_real = criterion(out_real, real_label)
        fake = net_g(torch.randn(b, nz, 1, 1))
        out_fake = net_d(fake.detach()).view(-1)
        err_d = err_real + criterion(out_fake, fake_label)
        err_d.backward()
        opt_d.step()
        net_g.zero_grad()
        err_g = criterion(net_d(fake).view(-1), real_label)
        err_g.backward()
        opt_g.step()
        return torch.stack([err_g, err_d, out_real.mean(), out_fake.mean()]).tolist()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - start
    print(json.dumps({"steps_per_sec": args.steps / elapsed, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
