"""Writes the files `tests/pytorch_file.rs` reads with hwrun's PyTorch-file reader.

Usage: python pytorch_file.py OUT_DIR

For every container shape and dtype, `torch.save` writes the object in both formats (zip, and
legacy with `_use_new_zipfile_serialization=False`). Beside each, `<case>.<api>.safetensors`
holds the tensors the reader's `api` (tensors, state_dict, tensor) must return, under the names
t0, t1, ...; `manifest.json` lists the cases with the dotted names in the order expected. The
error cases (forbidden globals, an unsupported dtype) are listed with the text their error must
contain.
"""

import collections
import json
import os
import sys
import zipfile

import torch
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
manifest = {"cases": [], "errors": []}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2)


def state_dict():
    net = Net()
    net.bn.running_mean.uniform_()
    net.bn.num_batches_tracked += 5
    return net.state_dict()


def all_dtypes():
    special = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0, 1e-40, 3.4e38])
    return {
        "f32": torch.randn(3, 4),
        "f32_special": special,
        "f16": torch.randn(2, 5).half(),
        "bf16": torch.randn(7).bfloat16(),
        "f64": torch.randn(2, 2, 2, dtype=torch.float64),
        "i64": torch.arange(-5, 5),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 0], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar_f32": torch.tensor(2.5),
        "scalar_i64": torch.tensor(7),
        "empty": torch.zeros(0, 3),
    }


def views():
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    return {
        "base": base,
        "slice": base[2:5, 3:8],
        "transposed": base.t(),
        "row": base[4],
        "strided": base[:, ::3],
        "reshaped": base.view(10, 6),
        "element": base[5, 9],
        "expanded": torch.ones(1).expand(5),
    }


def flatten(obj, prefix="", unwrap=True, only_dicts=False):
    """The reader's naming rule: dotted paths, `state_dict`/`model` unwrapped at the top."""
    join = lambda seg: f"{prefix}.{seg}" if prefix else seg
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            nested = unwrap and isinstance(value, dict) and key in ("state_dict", "model")
            found += flatten(value, prefix if nested else join(str(key)), nested, only_dicts)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += flatten(value, join(str(i)), False, only_dicts)
    return found


def expect(case, api, tensors):
    names = [f"t{i}" for i in range(len(tensors))]
    save_file({n: t.contiguous().clone() for n, (_, t) in zip(names, tensors)}, os.path.join(out, f"{case}.{api}.safetensors"))
    return {"api": api, "expected": f"{case}.{api}.safetensors", "keys": [k for k, _ in tensors]}


def save_both(case, obj, checks, **kwargs):
    for fmt, zipped in (("zip", True), ("legacy", False)):
        name = f"{case}.{fmt}.pt"
        torch.save(obj, os.path.join(out, name), _use_new_zipfile_serialization=zipped, **kwargs)
        manifest["cases"].append({"file": name, "checks": checks})


sd = state_dict()
sd_small = collections.OrderedDict(list(sd.items())[:2])

save_both("state_dict", sd, [expect("state_dict", "state_dict", list(sd.items())), expect("state_dict", "tensors", list(sd.items()))])

dtypes = all_dtypes()
save_both("dtypes", dtypes, [expect("dtypes", "tensors", list(dtypes.items()))])
save_both("dtypes_p4", dtypes, [expect("dtypes_p4", "state_dict", list(dtypes.items()))], pickle_protocol=4)

v = views()
save_both("views", v, [expect("views", "tensors", list(v.items()))])

net = Net()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for p in net.parameters():
    p.grad = torch.randn_like(p)
opt.step()
checkpoint = {
    "epoch": 3,
    "state_dict": net.state_dict(),
    "optimizer": opt.state_dict(),
    "lr": 0.1,
    "name": "dcgan",
    "flags": [True, None, (1, 2.5), b"raw"],
    "big": 2**70,
    "history": [torch.tensor(0.5), torch.tensor(0.25)],
}
save_both("checkpoint", checkpoint, [
    expect("checkpoint", "state_dict", list(net.state_dict().items())),
    expect("checkpoint", "tensors", flatten(checkpoint)),
])

model_ckpt = {"model": sd_small, "epoch": 7}
save_both("model_ckpt", model_ckpt, [
    expect("model_ckpt", "state_dict", list(sd_small.items())),
    expect("model_ckpt", "tensors", list(sd_small.items())),
])

noise = torch.randn(1, 3, 256, 256)
save_both("noise", noise, [expect("noise", "tensor", [("", noise)]), expect("noise", "tensors", [("", noise)])])

param = torch.nn.Parameter(torch.randn(3))
attributed = torch.randn(2)
attributed.note = "kept by _rebuild_from_type_v2"
params = {"param": param, "frozen": torch.nn.Parameter(torch.randn(2), requires_grad=False), "attributed": attributed}
save_both("parameters", params, [expect("parameters", "tensors", list(params.items()))])

# A big-endian zip file, as a big-endian machine writes it: torch reads it by swapping bytes.
little = os.path.join(out, "little.zip.pt")
big = os.path.join(out, "big_endian.zip.pt")
floats = {"a": torch.randn(4, 3), "b": torch.randn(6)[1:4]}
torch.save(floats, little)
with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith("/byteorder"):
            data = b"big"
        elif "/data/" in info.filename:
            data = b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))
        dst.writestr(info.filename, data)
reloaded = torch.load(big)
assert all(torch.equal(reloaded[k], floats[k]) for k in floats), "big-endian file does not load in torch"
manifest["cases"].append({"file": "big_endian.zip.pt", "checks": [expect("big_endian", "tensors", list(floats.items()))]})


class Custom:
    pass


class RunsCommand:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


for fmt, zipped in (("zip", True), ("legacy", False)):
    name = f"custom_class.{fmt}.pt"
    torch.save({"model": sd_small, "args": Custom()}, os.path.join(out, name), _use_new_zipfile_serialization=zipped)
    manifest["errors"].append({"file": name, "contains": ["`__main__.Custom`", "refusing global"]})
    name = f"os_system.{fmt}.pt"
    torch.save({"x": RunsCommand()}, os.path.join(out, name), _use_new_zipfile_serialization=zipped)
    manifest["errors"].append({"file": name, "contains": [f"`{os.system.__module__}.system`", "refusing global"]})
    name = f"complex.{fmt}.pt"
    torch.save({"z": torch.randn(2, dtype=torch.complex64)}, os.path.join(out, name), _use_new_zipfile_serialization=zipped)
    manifest["errors"].append({"file": name, "contains": ["torch.ComplexFloatStorage", "cannot read"]})

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(len(manifest["cases"]), "cases,", len(manifest["errors"]), "error cases")
