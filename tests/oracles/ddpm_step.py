# TeaPearce's ContextUnet (Conditional_Diffusion_MNIST), written from its description with its
# state_dict names, and one DDPM training step: reads the weights and the batch written by
# tests/ddpm_step.rs (x0, labels, t, noise, drop), takes one Adam step, prints the differences
# to hwrun's loss and updated weights. benches/models.py imports `ContextUnet` from here.
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualConvBlock(nn.Module):
    def __init__(self, ci, co, is_res=False):
        super().__init__()
        self.same_channels, self.is_res = ci == co, is_res
        self.conv1 = nn.Sequential(nn.Conv2d(ci, co, 3, 1, 1), nn.BatchNorm2d(co), nn.GELU())
        self.conv2 = nn.Sequential(nn.Conv2d(co, co, 3, 1, 1), nn.BatchNorm2d(co), nn.GELU())

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        if not self.is_res:
            return x2
        return ((x if self.same_channels else x1) + x2) / 1.414


class UnetDown(nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.model = nn.Sequential(ResidualConvBlock(ci, co), nn.MaxPool2d(2))

    def forward(self, x):
        return self.model(x)


class UnetUp(nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.model = nn.Sequential(nn.ConvTranspose2d(ci, co, 2, 2), ResidualConvBlock(co, co), ResidualConvBlock(co, co))

    def forward(self, x, skip):
        return self.model(torch.cat((x, skip), 1))


class EmbedFC(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.i = i
        self.model = nn.Sequential(nn.Linear(i, o), nn.GELU(), nn.Linear(o, o))

    def forward(self, x):
        return self.model(x.view(-1, self.i))


class ContextUnet(nn.Module):
    def __init__(self, in_channels=3, n_feat=128, n_classes=10, size=28):
        super().__init__()
        self.n_feat, self.n_classes, self.pool = n_feat, n_classes, size // 4
        self.init_conv = ResidualConvBlock(in_channels, n_feat, is_res=True)
        self.down1 = UnetDown(n_feat, n_feat)
        self.down2 = UnetDown(n_feat, 2 * n_feat)
        self.to_vec = nn.Sequential(nn.AvgPool2d(self.pool), nn.GELU())
        self.timeembed1 = EmbedFC(1, 2 * n_feat)
        self.timeembed2 = EmbedFC(1, n_feat)
        self.contextembed1 = EmbedFC(n_classes, 2 * n_feat)
        self.contextembed2 = EmbedFC(n_classes, n_feat)
        self.up0 = nn.Sequential(nn.ConvTranspose2d(2 * n_feat, 2 * n_feat, self.pool, self.pool), nn.GroupNorm(8, 2 * n_feat), nn.ReLU())
        self.up1 = UnetUp(4 * n_feat, n_feat)
        self.up2 = UnetUp(2 * n_feat, n_feat)
        self.out = nn.Sequential(nn.Conv2d(2 * n_feat, n_feat, 3, 1, 1), nn.GroupNorm(8, n_feat), nn.ReLU(), nn.Conv2d(n_feat, in_channels, 3, 1, 1))

    def forward(self, x, c, t, context_mask):
        x = self.init_conv(x)
        down1 = self.down1(x)
        down2 = self.down2(down1)
        hiddenvec = self.to_vec(down2)
        c = F.one_hot(c, num_classes=self.n_classes).float()
        context_mask = -1 * (1 - context_mask[:, None].repeat(1, self.n_classes))
        c = c * context_mask
        nf = self.n_feat
        cemb1 = self.contextembed1(c).view(-1, 2 * nf, 1, 1)
        temb1 = self.timeembed1(t).view(-1, 2 * nf, 1, 1)
        cemb2 = self.contextembed2(c).view(-1, nf, 1, 1)
        temb2 = self.timeembed2(t).view(-1, nf, 1, 1)
        up1 = self.up0(hiddenvec)
        up2 = self.up1(cemb1 * up1 + temb1, down2)
        up3 = self.up2(cemb2 * up2 + temb2, down1)
        return self.out(torch.cat((up3, x), 1))


def main():
    from safetensors.torch import load_file

    d, n_feat, n_t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    weights = load_file(f"{d}/weights.safetensors")
    batch = load_file(f"{d}/batch.safetensors")
    ours = load_file(f"{d}/rust.safetensors")
    net = ContextUnet(in_channels=batch["x0"].shape[1], n_feat=n_feat, n_classes=10, size=batch["x0"].shape[2])
    net.load_state_dict(weights, strict=True)
    net.train()
    # hwrun's training layout and optimizer: channels-last weights and the fused Adam (the
    # convolutions' rounding follows the layout, and Adam's first step turns the rounding noise
    # of near-zero gradients into steps of size lr).
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    betas = torch.linspace(1e-4, 0.02, n_t, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    t = batch["t"]
    ab = alpha_bar[t - 1].float().view(-1, 1, 1, 1)
    x_t = ab.sqrt() * batch["x0"] + (1 - ab).sqrt() * batch["noise"]
    loss = F.mse_loss(net(x_t, batch["labels"], t.float() / n_t, batch["drop"]), batch["noise"])
    opt.zero_grad()
    loss.backward()
    opt.step()
    state = net.state_dict()
    weight_diff = max((state[k].double() - ours[f"after.{k}"].double()).abs().max().item() for k in state)
    print(json.dumps({"loss": abs(loss.item() - ours["loss"].item()), "weights": weight_diff, "count": len(state)}))


if __name__ == "__main__":
    main()
