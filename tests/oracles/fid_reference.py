"""Reference numbers for tests/fid_reference.rs from the real tools: pytorch-fid and torch-fidelity.

Usage: python fid_reference.py WORKDIR

Builds pytorch-fid's FID Inception (its own FIDInception* blocks patched into torchvision's
Inception3, as `fid_inception_v3` does, minus the weight download) with seeded random weights and
random BatchNorm statistics, saves the state_dict with torch.save (zip and legacy formats) and as
safetensors, writes two folders of 64x64 PNGs (noise and smooth gradients), and computes with
pytorch-fid's and torch-fidelity's own functions:
  reference.npz: feat2048_a (get_activations, dims 2048), fid64, fid2048, is_mean, is_std (3 splits),
                 frechet_given (calculate_frechet_distance of s1.npz and s2.npz)
  a64.npz:       pytorch-fid's statistics of folder a at dims 64 (np.savez_compressed)
  s1.npz, s2.npz: random full-rank statistics (dims 96)
"""

import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image

import pytorch_fid.inception as pfi
from pytorch_fid.fid_score import IMAGE_EXTENSIONS, calculate_frechet_distance, get_activations
from safetensors.torch import save_file
import torch_fidelity

N_IMAGES = 12
IS_SPLITS = 3
torch.set_num_threads(2)


def build_fid_inception(seed=0):
    torch.manual_seed(seed)
    inception = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, init_weights=False, weights=None)
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    with torch.no_grad():
        for module in inception.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                # Not the identity: every statistic and affine parameter matters.
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.num_batches_tracked.fill_(7)
        # Small enough that the shared part of the features (their mean) does not pick one class
        # for every image, which would make the score 1.
        inception.fc.weight.normal_(0.0, 1.0 / 2048 ** 0.5)
        inception.fc.bias.normal_(0.0, 1.0)
    return inception.eval()


def write_images(folder, seed, n=N_IMAGES):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    for i in range(n):
        if i % 3 == 0:
            pixels = rng.randint(0, 256, size=(64, 64, 3))
        else:
            fx, fy, phase = rng.uniform(0.5, 4, size=3)
            colour = rng.uniform(0, 1, size=3)
            wave = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
            pixels = 255 * (wave[..., None] * colour + (1 - wave[..., None]) * (1 - colour))
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(os.path.join(folder, f"img_{i:03d}.png"))
    # Skipped by extension, like pytorch-fid does.
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image")


def files_of(folder):
    import pathlib

    path = pathlib.Path(folder)
    return sorted([file for ext in IMAGE_EXTENSIONS for file in path.glob("*.{}".format(ext))])


def pytorch_fid_model(inception, dims):
    # InceptionV3 builds its blocks from fid_inception_v3(); hand it ours instead of the download.
    original = pfi.fid_inception_v3
    pfi.fid_inception_v3 = lambda: inception
    try:
        return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
    finally:
        pfi.fid_inception_v3 = original


def random_statistics(rng, dims):
    a = rng.normal(size=(dims, 2 * dims))
    return rng.normal(size=dims), a @ a.T / (2 * dims)


def main(workdir):
    inception = build_fid_inception()
    state = inception.state_dict()
    torch.save(state, os.path.join(workdir, "weights.pth"))
    torch.save(state, os.path.join(workdir, "weights_legacy.pth"), _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(workdir, "weights.safetensors"))
    folders = {name: os.path.join(workdir, name) for name in ("a", "b")}
    for seed, folder in enumerate(folders.values()):
        write_images(folder, seed + 1)

    out = {}
    stats = {}
    for dims in (64, 2048):
        model = pytorch_fid_model(inception, dims)
        for name, folder in folders.items():
            act = get_activations(files_of(folder), model, batch_size=25, dims=dims, device="cpu", num_workers=0)
            stats[(name, dims)] = (np.mean(act, axis=0), np.cov(act, rowvar=False))
            if (name, dims) == ("a", 2048):
                out["feat2048_a"] = act
        out[f"fid{dims}"] = np.float64(calculate_frechet_distance(*stats[("a", dims)], *stats[("b", dims)]))
    np.savez_compressed(os.path.join(workdir, "a64.npz"), mu=stats[("a", 64)][0], sigma=stats[("a", 64)][1])

    metrics = torch_fidelity.calculate_metrics(
        input1=folders["a"],
        isc=True,
        feature_extractor_weights_path=os.path.join(workdir, "weights.pth"),
        cuda=False,
        cache=False,
        verbose=False,
        batch_size=35,
        isc_splits=IS_SPLITS,
    )
    out["is_mean"] = np.float64(metrics["inception_score_mean"])
    out["is_std"] = np.float64(metrics["inception_score_std"])

    rng = np.random.RandomState(5)
    s1, s2 = random_statistics(rng, 96), random_statistics(rng, 96)
    np.savez_compressed(os.path.join(workdir, "s1.npz"), mu=s1[0], sigma=s1[1])
    np.savez_compressed(os.path.join(workdir, "s2.npz"), mu=s2[0], sigma=s2[1])
    out["frechet_given"] = np.float64(calculate_frechet_distance(s1[0], s1[1], s2[0], s2[1]))

    np.savez(os.path.join(workdir, "reference.npz"), **{k: np.asarray(v, dtype=np.float64) for k, v in out.items()})
    print(json.dumps({k: float(v) for k, v in out.items() if np.ndim(v) == 0}))


if __name__ == "__main__":
    main(sys.argv[1])
