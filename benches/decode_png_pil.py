"""The torchvision-style baseline for benches/decode_png.rs: a Dataset.__getitem__ loop over a
course-layout folder (PIL open + convert("RGB") + np.asarray per file, labels from the CSV).

Usage: python decode_png_pil.py <images_dir> <csv>
Prints the seconds spent reading, then the pixel sum and image count as a cross-check.
"""

import csv
import sys
import time

import numpy as np
from PIL import Image


def main() -> None:
    images_dir, csv_path = sys.argv[1], sys.argv[2]
    started = time.perf_counter()
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    images, labels = [], []
    for row in rows:
        with Image.open(f"{images_dir}/{row['image_name']}") as image:
            images.append(np.asarray(image.convert("RGB")))
        labels.append(int(row["label"]))
    batch = np.stack(images)
    labels = np.asarray(labels, dtype=np.int64)
    elapsed = time.perf_counter() - started
    print(f"{elapsed:.6f}")
    print(int(batch.sum(dtype=np.int64)), len(labels))


if __name__ == "__main__":
    main()
