# PyTorch baselines of benches/diffusion.rs: a ContextUnet DDPM training step (n_feat 128, batch
# 256, 3x28x28, Adam; the model of tests/ddpm_step.py) and one forward pass of the course's face
# UNet at 256x256 (the model of tests/face_unet.py). Prints JSON: ctx_steps_per_sec, face_seconds.
import argparse
import importlib.util
import json
import os
import time

import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--face-iters", type=int, default=1)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def load(name):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


n_t = 400
alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, n_t, dtype=torch.float64), 0).float()
net = load("ddpm_step").ContextUnet()
opt = torch.optim.Adam(net.parameters(), lr=1e-4)
images = torch.randint(0, 256, (4096, 3, 28, 28), dtype=torch.uint8)
labels = torch.randint(0, 10, (4096,))


def step():
    index = torch.randint(0, 4096, (256,))
    x0 = images[index].float() / 127.5 - 1
    c = labels[index]
    t = torch.randint(1, n_t + 1, (256,))
    noise = torch.randn_like(x0)
    ab = alpha_bar[t - 1].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    mask = (torch.rand(256) < 0.1).float()
    loss = F.mse_loss(net(x_t, c, t.float() / n_t, mask), noise)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


for _ in range(args.warmup):
    step()
start = time.perf_counter()
for _ in range(args.steps):
    step()
ctx_rate = args.steps / (time.perf_counter() - start)

unet = load("face_unet").UNet().eval()
x = torch.randn(1, 3, 256, 256)
t = torch.tensor([981.0])
with torch.no_grad():
    start = time.perf_counter()
    for _ in range(args.face_iters):
        unet(x, t)
    face_seconds = (time.perf_counter() - start) / args.face_iters
print(json.dumps({"ctx_steps_per_sec": ctx_rate, "face_seconds": face_seconds}))
