"""PyTorch oracle for tests/parity_gan.rs.

Builds the PyTorch DCGAN tutorial's generator and discriminator (`nn.Sequential` named `main`,
as in https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html, with the widths as
parameters), loads hwrun's weights and batch, and prints the largest absolute differences from
hwrun's results as JSON. Modes:

- dcgan: one discriminator step (BCE on real with label 1 and on detached fake with label 0)
  and one generator step (BCE of D(G(z)) with label 1): D outputs, fake images, both losses,
  every gradient of D after its step and of G after its step;
- wgan: the WGAN-GP penalty on the given interpolates (critic with LayerNorm, no sigmoid)
  through torch.autograd.grad(create_graph=True), and the critic's gradients of the penalty;
- sn: a 28x28 discriminator under torch.nn.utils.spectral_norm, k training-mode forward passes,
  then the power-iteration vectors, sigma of every layer and the last output.

usage: python parity_gan.py MODE DIR   (DIR holds weights.safetensors, batch.safetensors and
       rust.safetensors written by the Rust test)
"""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


def generator(nz, ngf, nc):
    # The tutorial's Generator.main for 64x64 images.
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )


def discriminator(ndf, nc):
    # The tutorial's Discriminator.main for 64x64 images.
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
    )


def critic32(ndf, nc):
    # WGAN-GP critic at 32x32: LayerNorm over [C, H, W] instead of BatchNorm, no sigmoid.
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.LayerNorm([ndf * 2, 8, 8]), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.LayerNorm([ndf * 4, 4, 4]), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False),
    )


def spectral_discriminator28(ndf, nc):
    sn = nn.utils.spectral_norm
    return nn.Sequential(
        sn(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False)), nn.LeakyReLU(0.2),
        sn(nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False)), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2),
        sn(nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False)), nn.Sigmoid(),
    )


def part(weights, prefix):
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def diff(a, b):
    return (a.detach().double() - b.detach().double()).abs().max().item()


def grads(net, prefix, rust):
    worst, count = 0.0, 0
    for name, p in net.named_parameters():
        # A parameter the loss does not reach has no gradient; hwrun writes zeros for it.
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        worst = max(worst, diff(grad, rust[f"grad.{prefix}{name}"]))
        count += 1
    return worst, count


def dcgan(d, batch, rust):
    b = batch["real"].shape[0]
    nz = batch["noise"].shape[1]
    weights = load_file(f"{d}/weights.safetensors")
    ngf = weights["generator.main.12.weight"].shape[0]
    ndf = weights["discriminator.main.0.weight"].shape[0]
    net_g, net_d = generator(nz, ngf, 3), discriminator(ndf, 3)
    net_g.load_state_dict(part(weights, "generator.main."))
    net_d.load_state_dict(part(weights, "discriminator.main."))
    criterion = nn.BCELoss()
    real, noise = batch["real"], batch["noise"].view(b, nz, 1, 1)
    # Discriminator step, as the tutorial's training loop.
    net_d.zero_grad()
    out_real = net_d(real).view(-1)
    err_real = criterion(out_real, torch.full((b,), 1.0))
    fake = net_g(noise)
    out_fake = net_d(fake.detach()).view(-1)
    err_fake = criterion(out_fake, torch.full((b,), 0.0))
    err_d = err_real + err_fake
    err_d.backward()
    d_grad, d_count = grads(net_d, "discriminator.main.", rust)
    # Generator step on a second noise batch.
    net_g.zero_grad()
    fake2 = net_g(batch["noise2"].view(b, nz, 1, 1))
    err_g = criterion(net_d(fake2).view(-1), torch.full((b,), 1.0))
    err_g.backward()
    g_grad, g_count = grads(net_g, "generator.main.", rust)
    return {
        "d_real": diff(out_real, rust["d_real"]),
        "d_fake": diff(out_fake, rust["d_fake"]),
        "fake": diff(fake, rust["fake"]),
        "d_loss": diff(err_d, rust["d_loss"]),
        "g_loss": diff(err_g, rust["g_loss"]),
        "d_grad": d_grad,
        "g_grad": g_grad,
        "grad_count": d_count + g_count,
    }


def wgan(d, batch, rust):
    weights = load_file(f"{d}/weights.safetensors")
    ndf = weights["discriminator.main.0.weight"].shape[0]
    net = critic32(ndf, 3)
    net.load_state_dict(part(weights, "discriminator.main."))
    real, fake, alpha = batch["real"], batch["fake"], batch["alpha"]
    x_hat = (real + alpha * (fake - real)).detach().requires_grad_(True)
    out = net(x_hat)
    (g,) = torch.autograd.grad(out, x_hat, grad_outputs=torch.ones_like(out), create_graph=True)
    gp = ((g.view(g.shape[0], -1).norm(2, dim=1) - 1) ** 2).mean()
    gp.backward()
    worst, count = grads(net, "discriminator.main.", rust)
    return {"gp": diff(gp, rust["gp"]), "grad": worst, "grad_count": count}


def sn(d, batch, rust):
    weights = load_file(f"{d}/weights.safetensors")
    ndf = weights["discriminator.main.0.weight_orig"].shape[0]
    net = spectral_discriminator28(ndf, 3)
    net.load_state_dict(part(weights, "discriminator.main."))
    net.train()
    for _ in range(int(batch["k"].item())):
        out = net(batch["real"])
    worst_uv, worst_sigma = 0.0, 0.0
    for index in (0, 2, 5):
        conv = net[index]
        w = conv.weight_orig.detach()
        u, v = conv.weight_u, conv.weight_v
        sigma = torch.dot(u, torch.mv(w.reshape(w.shape[0], -1), v))
        worst_uv = max(worst_uv, diff(u, rust[f"u.{index}"]), diff(v, rust[f"v.{index}"]))
        worst_sigma = max(worst_sigma, diff(sigma, rust[f"sigma.{index}"]))
    return {"uv": worst_uv, "sigma": worst_sigma, "out": diff(out.view(-1), rust["out"]), "grad_count": 0}


def main():
    mode, d = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    batch = load_file(f"{d}/batch.safetensors")
    rust = load_file(f"{d}/rust.safetensors")
    result = {"dcgan": dcgan, "wgan": wgan, "sn": sn}[mode](d, batch, rust)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
