# The course's face UNet written in PyTorch from FACE_UNET.md's table (not from hwrun's code), at
# a reduced width: random weights, a batch, its output. Usage: face_unet.py OUT_DIR BASE GROUPS SIZE
# (benches/models.py imports `UNet` from here for the full-size timing.)
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

# (name, kind, C_in, C_out, attention) at full width, the table of FACE_UNET.md.
TABLE = []
def rows(names, kind, ci, co, attn=False):
    for n in names:
        TABLE.append((n, kind, ci, co, attn))
rows(["down2", "down3"], "res", 128, 128); rows(["down4"], "down", 128, 128)
rows(["down5", "down6"], "res", 128, 128); rows(["down7"], "down", 128, 128)
rows(["down8"], "res", 128, 256); rows(["down9"], "res", 256, 256); rows(["down10"], "down", 256, 256)
rows(["down11", "down12"], "res", 256, 256); rows(["down13"], "down", 256, 256)
rows(["down14"], "res", 256, 512, True); rows(["down15"], "res", 512, 512, True); rows(["down16"], "down", 512, 512)
rows(["down17", "down18"], "res", 512, 512)
rows(["mid1"], "res", 512, 512, True); rows(["mid2"], "res", 512, 512)
rows(["up1", "up2", "up3"], "res", 1024, 512); rows(["up4"], "up", 512, 512)
rows(["up5", "up6"], "res", 1024, 512, True); rows(["up7"], "res", 768, 512, True); rows(["up8"], "up", 512, 512)
rows(["up9"], "res", 768, 256); rows(["up10", "up11"], "res", 512, 256); rows(["up12"], "up", 256, 256)
rows(["up13", "up14"], "res", 512, 256); rows(["up15"], "res", 384, 256); rows(["up16"], "up", 256, 256)
rows(["up17"], "res", 384, 128); rows(["up18", "up19"], "res", 256, 128); rows(["up20"], "up", 128, 128)
rows(["up21", "up22", "up23"], "res", 256, 128)


class Sinusoidal(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, t):
        angles = t[:, None] * self.inv_freq[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Res(nn.Module):
    def __init__(self, ci, co, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, ci)
        self.conv1 = nn.Conv2d(ci, co, 3, padding=1)
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(tdim, co))
        self.norm2 = nn.GroupNorm(groups, co)
        self.conv2 = nn.Conv2d(co, co, 3, padding=1)
        self.skip = nn.Conv2d(ci, co, 1) if ci != co else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class Attention(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        logits = torch.einsum("bchw,bcyx->bhwyx", q, k) / math.sqrt(c)
        weights = logits.reshape(b, h, w, h * w).softmax(-1).reshape(b, h, w, h, w)
        return self.out(torch.einsum("bhwyx,bcyx->bchw", weights, v)) + x


class ResAttention(nn.Module):
    def __init__(self, ci, co, tdim, attn, groups):
        super().__init__()
        self.resblocks = Res(ci, co, tdim, groups)
        self.attention = Attention(co, groups) if attn else None

    def forward(self, x, temb):
        h = self.resblocks(x, temb)
        return h if self.attention is None else self.attention(h)


class UNet(nn.Module):
    def __init__(self, base=128, groups=32):
        super().__init__()
        scale = base / 128
        tdim = 4 * base
        self.time = nn.Sequential(Sinusoidal(base), nn.Linear(base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.down1 = nn.Conv2d(3, base, 3, padding=1)
        self.order = []
        for name, kind, ci, co, attn in TABLE:
            ci, co = int(ci * scale), int(co * scale)
            if kind == "res":
                module = ResAttention(ci, co, tdim, attn, groups)
            elif kind == "down":
                module = nn.Sequential(nn.Conv2d(ci, co, 3, stride=2, padding=1))
            else:
                module = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ci, co, 3, padding=1))
            setattr(self, name, module)
            self.order.append((name, kind))
        self.out = nn.Sequential(nn.GroupNorm(groups, base), nn.SiLU(), nn.Conv2d(base, 3, 3, padding=1))

    def forward(self, x, t):
        temb = self.time(t)
        h = self.down1(x)
        skips = [h]
        for name, kind in self.order:
            module = getattr(self, name)
            if name.startswith("down"):
                h = module(h, temb) if kind == "res" else module(h)
                skips.append(h)
            elif name.startswith("mid"):
                h = module(h, temb)
            elif kind == "res":
                h = module(torch.cat([h, skips.pop()], dim=1), temb)
            else:
                h = module(h)
        return self.out(h)


def main():
    out_dir, base, groups, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    net = UNet(base, groups).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name or name.startswith("out.0"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save(state, f"{out_dir}/UNet.pt")
    x = torch.randn(2, 3, size, size)
    t = torch.tensor([981.0, 1.0])
    with torch.no_grad():
        y = net(x, t)
    save_file({"x": x, "t": t, "y": y}, f"{out_dir}/io.safetensors")
    print(len(state))


if __name__ == "__main__":
    main()
