"""PyTorch baselines of benches/models.rs: one row of its table in one configuration.

Rows (the models, batch sizes and loops of the Rust side; the networks are the differential
tests' PyTorch references, so the benchmark times exactly the models checked against hwrun):
- gemm:      a 2048x2048 matmul, fp32 (eager) or bf16 (best, where bf16 is fast), summed and read back;
- dann:      the DANN MNIST CNN step at batch 128 per domain: one feature pass over source +
             target, gradient reversal, three cross-entropies, Adam 1e-3;
- dcgan:     the PyTorch tutorial's DCGAN 64x64 step at batch 128 (D on real and on G(z).detach(),
             D step, D on G(z) for G, G step), Adam 2e-4 betas (0.5, 0.999);
- wgan_gp:   5 critic steps (LayerNorm critic, gradient penalty lambda 10 through a double
             backward) and 1 generator step at 64x64, batch 64, Adam 1e-4 betas (0, 0.9);
- ddpm:      a ContextUnet noise-prediction step, n_feat 128, batch 256, 3x28x28, Adam 1e-4;
- face_unet: one forward pass of the course's face UNet at 256x256 (batch 1, no gradients);
- fid:       pytorch-fid's 2048-d features of N random 64x64 images in batches of 50.

Configs: `eager` = fp32, default layout, default (foreach) Adam, `no_grad` for inference; `best` =
PyTorch's fastest configuration: bf16 autocast for forward passes and losses, channels-last
weights and inputs, Adam(fused=True), `inference_mode`, and on CUDA cuDNN benchmark mode (the fid
row stays fp32: FID numbers must not change). On a CPU where oneDNN has no bf16 kernels
(`torch.ops.mkldnn._is_mkldnn_bf16_supported()` false: no AVX-512) bf16 runs in reference
kernels many times slower than fp32, so `best` keeps fp32 there.

`--device cuda` runs the row on the GPU (tensors created there, timings synchronised).

usage: python models.py ROW CONFIG --threads N [--device cpu|cuda] [--steps S] [--warmup W] [--images N]
prints one JSON line: {"ms": ... per step, pass or matmul}, and for `eager` also "gflop": the
floating-point work of one step by torch.utils.flop_counter's formulas (matmuls and convolutions,
forward and backward, double backward included), which is the same model's work on hwrun's side
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

GEMM_N = 2048


class FlopCount(TorchDispatchMode):
    """The FLOPs of the ops run under it, by `flop_registry`'s formulas. Not `FlopCounterMode`:
    its module hooks reject the gradient penalty's `autograd.grad`."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


class Config:
    def __init__(self, best, device):
        self.best = best
        self.device = device
        fast_bf16 = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        self.bf16 = best and fast_bf16
        self.format = torch.channels_last if best else torch.contiguous_format

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def layout(self, module_or_tensor):
        return module_or_tensor.to(memory_format=self.format)

    def adam(self, params, **kwargs):
        return torch.optim.Adam(params, fused=True if self.best else None, **kwargs)

    def inference(self):
        return torch.inference_mode() if self.best else torch.no_grad()


def gemm(cfg):
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(GEMM_N, GEMM_N, generator=gen, device="cpu").to(cfg.device, dtype)
    b = torch.randn(GEMM_N, GEMM_N, generator=gen, device="cpu").to(cfg.device, dtype)
    # Summed and read back as hwrun's GEMM cell does, so both time the same work.
    return lambda: torch.sum(a @ b, dtype=torch.float32).item()


def dann(cfg):
    from parity_pytorch import Net, ReverseGradient

    batch, n = 128, 4096
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8, generator=gen, device="cpu").to(cfg.device) for _ in range(2)]
    labels = torch.randint(0, 10, (n,), generator=gen, device="cpu").to(cfg.device)
    model = cfg.layout(Net(with_domain=True))
    opt = cfg.adam(model.parameters(), lr=1e-3)
    zeros, ones = torch.zeros(batch, dtype=torch.long), torch.ones(batch, dtype=torch.long)

    def step():
        si, ti = torch.randint(0, n, (batch,)), torch.randint(0, n, (batch,))
        x = torch.cat([images[0][si], images[1][ti]]).float() / 255
        x = cfg.layout(x)
        ys = labels[si]
        with cfg.autocast():
            features = model.feature(x)
            class_logits = model.classifier(features[:batch])
            class_loss = F.cross_entropy(class_logits, ys)
            domain_logits = model.domain(ReverseGradient.apply(features, 0.5))
            domain_loss = F.cross_entropy(domain_logits[:batch], zeros) + F.cross_entropy(domain_logits[batch:], ones)
            loss = class_loss + domain_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        return torch.stack([loss.detach().float(), class_loss.detach().float()]).tolist()

    return step


def weights_init(m):
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def critic64(ndf, nc):
    # The WGAN-GP critic hwrun builds at 64x64: LayerNorm over [C, H, W], no sigmoid.
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.LayerNorm([ndf * 2, 16, 16]), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.LayerNorm([ndf * 4, 8, 8]), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.LayerNorm([ndf * 8, 4, 4]), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
    )


def gan(cfg, wgan):
    from parity_gan import discriminator, generator

    batch, nz, n = (64 if wgan else 128), 100, 512
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
    g = generator(nz, 64, 3)
    # The tutorial's D ends in a Sigmoid for BCELoss; autocast refuses BCELoss, so the best
    # configuration takes the logits into BCE-with-logits (the same loss).
    d = critic64(64, 3) if wgan else discriminator(64, 3)
    if cfg.best and not wgan:
        d = d[:-1]
    g.apply(weights_init)
    d.apply(weights_init)
    g, d = cfg.layout(g), cfg.layout(d)
    lr, betas = (1e-4, (0.0, 0.9)) if wgan else (2e-4, (0.5, 0.999))
    opt_g, opt_d = cfg.adam(g.parameters(), lr=lr, betas=betas), cfg.adam(d.parameters(), lr=lr, betas=betas)

    def bce(out, label):
        target = torch.full((out.shape[0],), label)
        if cfg.best:
            return F.binary_cross_entropy_with_logits(out.float().view(-1), target)
        return F.binary_cross_entropy(out.view(-1), target)

    def real_batch():
        return cfg.layout(images[torch.randint(0, n, (batch,))].float() / 127.5 - 1.0)

    def noise():
        return cfg.layout(torch.randn(batch, nz, 1, 1))

    def dcgan_step():
        real = real_batch()
        opt_d.zero_grad()
        with cfg.autocast():
            fake = g(noise())
            err_d = bce(d(real), 1.0) + bce(d(fake.detach()), 0.0)
        err_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        with cfg.autocast():
            err_g = bce(d(fake), 1.0)
        err_g.backward()
        opt_g.step()
        return torch.stack([err_d.detach().float(), err_g.detach().float()]).tolist()

    def wgan_step():
        for _ in range(5):
            real = real_batch()
            opt_d.zero_grad()
            with cfg.autocast():
                with torch.no_grad():
                    fake = g(noise())
                alpha = torch.rand(batch, 1, 1, 1)
                x_hat = (real + alpha * (fake.float() - real)).requires_grad_(True)
                out = d(x_hat)
                (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
                gp = ((grad.reshape(batch, -1).norm(2, dim=1) - 1) ** 2).mean()
                loss_d = d(fake).float().mean() - d(real).float().mean() + 10.0 * gp
            loss_d.backward()
            opt_d.step()
        opt_g.zero_grad()
        with cfg.autocast():
            loss_g = -d(g(noise())).float().mean()
        loss_g.backward()
        opt_g.step()
        return torch.stack([loss_d.detach(), loss_g.detach()]).tolist()

    return wgan_step if wgan else dcgan_step


def ddpm(cfg):
    from ddpm_step import ContextUnet

    n_t, batch, n = 400, 256, 4096
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, n_t, dtype=torch.float64), 0).float()
    net = cfg.layout(ContextUnet())
    opt = cfg.adam(net.parameters(), lr=1e-4)
    images = torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))

    def step():
        index = torch.randint(0, n, (batch,))
        x0 = cfg.layout(images[index].float() / 127.5 - 1)
        t = torch.randint(1, n_t + 1, (batch,))
        noise = torch.randn_like(x0)
        ab = alpha_bar[t - 1].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        mask = (torch.rand(batch) < 0.1).float()
        with cfg.autocast():
            loss = F.mse_loss(net(x_t, labels[index], t.float() / n_t, mask).float(), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def face_unet(cfg):
    from face_unet import UNet

    unet = cfg.layout(UNet().eval())
    x = cfg.layout(torch.randn(1, 3, 256, 256))
    t = torch.tensor([981.0])

    def step():
        with cfg.inference(), cfg.autocast():
            return unet(x, t).float().sum().item()

    return step


def fid(cfg, images):
    from fid_reference import build_fid_inception, pytorch_fid_model

    model = pytorch_fid_model(build_fid_inception(), 2048)
    model = cfg.layout(model)
    gen = torch.Generator().manual_seed(1)
    data = torch.randint(0, 256, (images, 3, 64, 64), dtype=torch.uint8, generator=gen, device="cpu").to(cfg.device)

    def step():
        with cfg.inference():
            for start in range(0, images, 50):
                x = cfg.layout(data[start:start + 50].float() / 255)
                model(x)

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("row", choices=["gemm", "dann", "dcgan", "wgan_gp", "ddpm", "face_unet", "fid"])
    ap.add_argument("config", choices=["eager", "best"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    # Every factory call of the rows (weights, batches, noise) lands on the device.
    torch.set_default_device(device)
    cfg = Config(args.config == "best", device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.best

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    builders = {
        "gemm": lambda: gemm(cfg),
        "dann": lambda: dann(cfg),
        "dcgan": lambda: gan(cfg, wgan=False),
        "wgan_gp": lambda: gan(cfg, wgan=True),
        "ddpm": lambda: ddpm(cfg),
        "face_unet": lambda: face_unet(cfg),
        "fid": lambda: fid(cfg, args.images),
    }
    step = builders[args.row]()
    for _ in range(args.warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize()
    result = {"ms": (time.perf_counter() - start) / args.steps * 1e3}
    if not cfg.best:
        # Counted after the timing: the counter's dispatch hooks would slow the timed steps.
        counter = FlopCount()
        with counter:
            step()
        result["gflop"] = counter.flops / 1e9
    print(json.dumps(result))


if __name__ == "__main__":
    main()
