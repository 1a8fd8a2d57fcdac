"""pytorch-fid's feature extraction speed, the reference for benches/fid_features.rs.

Builds the FID Inception with the differential test's seeded random weights (its own
FIDInception* classes, tests/oracles/fid_reference.py), saves them as safetensors for hwrun, writes N
64x64 PNGs, and times pytorch-fid's `get_activations` (2048-d, batch 50, DataLoader workers as
`python -m pytorch_fid` picks them: min(8, CPUs)) on the CPU at the given thread count.

usage: python fid_features.py --dir D --images N --threads T
writes D/weights.safetensors, D/images/*.png, D/features.npz (`features`);
prints one JSON line: {"seconds": ..., "images": N, "threads": T}
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fid_reference import build_fid_inception, files_of, pytorch_fid_model, write_images  # noqa: E402
from pytorch_fid.fid_score import get_activations  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inception = build_fid_inception()
    save_file({k: v.contiguous() for k, v in inception.state_dict().items()}, os.path.join(args.dir, "weights.safetensors"))
    folder = os.path.join(args.dir, "images")
    write_images(folder, 1, n=args.images)
    model = pytorch_fid_model(inception, 2048)
    workers = min(8, len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    act = get_activations(files_of(folder), model, batch_size=50, dims=2048, device="cpu", num_workers=workers)
    seconds = time.perf_counter() - start
    np.savez(os.path.join(args.dir, "features.npz"), features=act)
    print(json.dumps({"seconds": seconds, "images": args.images, "threads": args.threads}))


if __name__ == "__main__":
    main()
