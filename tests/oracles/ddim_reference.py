# DDIM, slerp and the PNG rounding in PyTorch, written from FACE_UNET.md's formulas: reads the
# starting noise and the injected z written by tests/ddim_reference.rs, writes the chains.
# Usage: ddim_reference.py DIR
import json
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

d = sys.argv[1]
inputs = load_file(f"{d}/inputs.safetensors")
x_start, zs = inputs["x"], inputs["z"]

betas = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)
alpha_bar = torch.cumprod(1 - betas, dim=0)


def eps_model(x, t):
    # The fixed noise model both sides implement.
    return torch.tanh(0.7 * x + t / 1000.0)


def ddim(convention, eta):
    if convention == "offset":
        steps, clip = list(range(981, 0, -20)), True
    else:
        steps, clip = list(range(980, -1, -20)), False
    x = x_start.clone()
    for k, t in enumerate(steps):
        a_t = alpha_bar[t].float()
        prev = t - 20
        a_prev = alpha_bar[prev].float() if prev >= 0 else (alpha_bar[0].float() if convention == "offset" else torch.tensor(1.0))
        eps = eps_model(x, float(t))
        x0 = (x - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)
        if clip:
            x0 = x0.clamp(-1, 1)
        sigma = eta * torch.sqrt((1 - a_prev) / (1 - a_t)) * torch.sqrt(1 - a_t / a_prev)
        x = torch.sqrt(a_prev) * x0 + torch.sqrt(1 - a_prev - sigma**2) * eps + sigma * zs[k]
    return x


out = {}
for convention in ["offset", "zero"]:
    for eta in [0.0, 0.5]:
        out[f"{convention}_{eta}"] = ddim(convention, eta)

z0, z1 = inputs["z0"], inputs["z1"]
theta = torch.acos(torch.sum(z0 * z1) / (torch.norm(z0) * torch.norm(z1)))
out["slerp"] = torch.stack([torch.sin((1 - a) * theta) / torch.sin(theta) * z0 + torch.sin(a * theta) / torch.sin(theta) * z1 for a in [i / 10 for i in range(11)]])
out["betas"] = betas
out["alpha_bar"] = alpha_bar
save_file(out, f"{d}/python.safetensors")

# torchvision's save_image rounding of the same image the Rust side wrote as PNG.
image = inputs["image"]
try:
    from torchvision.utils import save_image

    save_image(image, f"{d}/torchvision.png")
    expected = np.asarray(Image.open(f"{d}/torchvision.png"))
    source = "torchvision"
except ImportError:
    expected = (image * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    source = "formula"
ours = np.asarray(Image.open(f"{d}/rust.png"))
print(json.dumps({"png_max_diff": int(np.abs(ours.astype(int) - expected.astype(int)).max()), "png_source": source}))
