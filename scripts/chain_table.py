"""Summarise scripts/chain: the latency table's check against whole networks, the search
without and with the latency penalty (derived network, its predicted and measured latency,
parameters, multiply-adds, stand-alone accuracy, the derived latency per epoch), and the
Pareto fronts of the multi-objective evolutions (SPOS and first-order supernets), with the
SPOS front's best architecture within the target trained like the derived ones. Writes
OUT/README.md, OUT/latency-check.csv, OUT/epochs.csv, OUT/pareto-{spos,plain}.csv,
OUT/evolution-{spos,plain}.csv and the plots.
    .venv/bin/python scripts/chain_table.py RUNS OUT EPOCHS SUBSET TRAIN_EPOCHS TRAIN_SUBSET \
        TEST_SUBSET TARGET_FRACTION TARGET_MS SPOS_EPOCHS
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import h5py

SUPERNET = "target/release/supernet"
SPACE = "supernets/mbv3_chain.toml"
# key, name, flags: the searches whose derived network is trained (run directory RUNS/key).
METHODS = [
    ("plain", "first order, no penalty", ""),
    ("latency", "first order + latency penalty", "--latency-table lut.json --latency-target {target}"),
]
# key, name: the supernets evolved with --pareto (RUNS/key/evolution-pareto.csv).
EVOLVED = [("spos", "SPOS supernet"), ("plain", "first-order supernet (no penalty)")]


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def predict(table, arch):
    """The table's latency of an architecture: stem, head, fixed layers, chosen entries."""
    choices = arch.split(",")
    ms = table["stem_ms"] + table["head_ms"]
    for layer in table["layers"]:
        if layer["row"] is None:
            ms += next(iter(layer["ms"].values()))
        else:
            ms += layer["ms"][choices[layer["row"]]]
    return ms


def inspect(genotype):
    out = subprocess.run([SUPERNET, "inspect", "--space", SPACE, "--genotype", genotype],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"^network\s+(\d+) parameters .*?, (\d+) multiply-adds", out, re.M)
    return int(m.group(1)), int(m.group(2))


def timing(path):
    """The one row of `profile --table --arch`: predicted, measured ms."""
    with open(path) as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh]
    row = next(r for r in rows[2:] if len(r) == 4)
    return float(row[1]), float(row[2])


def main():
    (runs, out, epochs, subset, train_epochs, train_subset, test_subset, fraction,
     target, spos_epochs) = sys.argv[1:11]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(runs, "lut.json")) as fh:
        table = json.load(fh)
    check = table["check"]
    with open(os.path.join(out, "latency-check.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "predicted_ms", "measured_ms", "rel_error"])
        for row in zip(check["archs"], check["predicted_ms"], check["measured_ms"],
                       check["rel_errors"]):
            w.writerow([row[0], f"{row[1]:.4f}", f"{row[2]:.4f}", f"{row[3]:+.4f}"])
    shutil.copy(os.path.join(runs, "lut.json"), os.path.join(out, "lut.json"))

    rows, per_epoch = [], {}
    for key, name, flags in METHODS:
        run = os.path.join(runs, key)
        with h5py.File(os.path.join(run, "run.h5"), "r") as f:
            genos = [text(g) for g in f["epochs/genotype"][:]]
            val = f["epochs/val_acc"][:]
            secs = float(sum(f["epochs/seconds"][:]))
            expected = (list(f["hardware/search/expected_latency_ms"][:])
                        if "hardware/search" in f else None)
        per_epoch[key] = ([predict(table, g) for g in genos], expected, genos)
        genotype = os.path.join(run, "genotype.txt")
        params, macs = inspect(genotype)
        predicted, measured = timing(os.path.join(run, "latency.tsv"))
        with h5py.File(os.path.join(run, "train", "run.h5"), "r") as f:
            test_acc = 100 * float(f["epochs/val_acc"][-1])
        changed = [i + 1 for i in range(1, len(genos)) if genos[i] != genos[i - 1]]
        rows.append(dict(
            name=name, flags=flags.format(target=target) or "(none)",
            genotype=genos[-1], val=f"{100 * float(val[-1]):.2f}", minutes=f"{secs / 60:.1f}",
            params=params, macs=macs, predicted=f"{predicted:.3f}", measured=f"{measured:.3f}",
            test=f"{test_acc:.2f}", last_change=changed[-1] if changed else 1))
        for png in ("choices.png",):
            src = os.path.join(run, "plots", png)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(out, f"{key}-{png}"))

    with open(os.path.join(out, "epochs.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "epoch", "derived_predicted_ms", "expected_ms", "genotype"])
        for key, (lat, expected, genos) in per_epoch.items():
            for i, (ms, g) in enumerate(zip(lat, genos)):
                e = f"{expected[i]:.4f}" if expected else ""
                w.writerow([key, i + 1, f"{ms:.4f}", e, g])

    fronts = {}
    for key, _ in EVOLVED:
        evo = os.path.join(runs, key, "evolution-pareto.csv")
        with open(evo) as fh:
            cands = list(csv.DictReader(fh))
        front = sorted((c for c in cands if c["pareto"] == "1"),
                       key=lambda c: float(c["latency_ms"]))
        fronts[key] = (len(cands), front)
        shutil.copy(evo, os.path.join(out, f"evolution-{key}.csv"))
        with open(os.path.join(out, f"pareto-{key}.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["arch", "accuracy", "latency_ms", "macs", "params"])
            for c in front:
                w.writerow([c["arch"], c["accuracy"], c["latency_ms"], c["macs"], c["params"]])
        plot = os.path.join(runs, key, "plots", "pareto-evolution-pareto.png")
        if os.path.exists(plot):
            shutil.copy(plot, os.path.join(out, f"pareto-{key}.png"))

    evolved = os.path.join(runs, "spos", "evolved")
    with open(os.path.join(evolved, "genotype.txt")) as fh:
        arch = fh.read().strip()
    params, macs = inspect(os.path.join(evolved, "genotype.txt"))
    predicted, measured = timing(os.path.join(evolved, "latency.tsv"))
    with h5py.File(os.path.join(evolved, "train", "run.h5"), "r") as f:
        test_acc = 100 * float(f["epochs/val_acc"][-1])
    with h5py.File(os.path.join(runs, "spos", "run.h5"), "r") as f:
        spos_secs = float(sum(f["epochs/seconds"][:]))
    rows.append(dict(
        name="SPOS + NSGA-II evolution: most accurate front network within the target",
        flags=f"--strategy spos --epochs {spos_epochs}; evolve --pareto",
        genotype=arch, val="-", minutes=f"{spos_secs / 60:.1f}", params=params,
        macs=macs, predicted=f"{predicted:.3f}", measured=f"{measured:.3f}",
        test=f"{test_acc:.2f}", last_change="-"))

    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write(HEAD.format(epochs=epochs, subset=subset, train=train_epochs,
                             train_subset=train_subset, test_subset=test_subset,
                             fraction=fraction, target=float(target), device=table["device"],
                             threads=table["threads"], batch=table["batch"],
                             repeats=table["repeats"], n=len(check["archs"]),
                             mean=100 * check["mean_abs_rel_error"],
                             max=100 * check["max_abs_rel_error"]))
        fh.write("| search | flags | supernet val acc | derived network | parameters | "
                 "multiply-adds | predicted latency (ms) | measured latency (ms) | "
                 "genotype last changed (epoch) | search time (min) | stand-alone test acc |\n")
        fh.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            val = "-" if r["val"] == "-" else f"{r['val']}%"
            fh.write(f"| {r['name']} | `{r['flags']}` | {val} | `{r['genotype']}` | "
                     f"{r['params']} | {r['macs']} | {r['predicted']} | {r['measured']} | "
                     f"{r['last_change']} | {r['minutes']} | {r['test']}% |\n")
        fh.write("\nThe SPOS row's supernet accuracy is left out: its paths' inherited-weight "
                 "accuracies are in the evolution below. (The committed SPOS run validated its "
                 "epochs under the mixture of all paths, which SPOS never trains, and recorded "
                 "10%; SPOS now validates the derived path, which leaves its training and "
                 "these results unchanged.)\n")
        fh.write("\nDerived network's predicted latency (ms) at each epoch end "
                 "(`epochs.csv`, with the penalised search's expected latency):\n\n")
        n = len(per_epoch["plain"][0])
        marks = sorted(set(list(range(0, n, max(1, n // 10))) + [n - 1]))
        fh.write("| search | " + " | ".join(str(i + 1) for i in marks) + " |\n")
        fh.write("|---|" + "---|" * len(marks) + "\n")
        for key, name, _ in METHODS:
            lat = per_epoch[key][0]
            fh.write(f"| {name} | " + " | ".join(f"{lat[i]:.3f}" for i in marks) + " |\n")
        fh.write(EVOLUTION)
        for key, name in EVOLVED:
            n, front = fronts[key]
            fh.write(f"\n**{name}**: {n} candidates scored, {len(front)} on the final front "
                     f"(`evolution-{key}.csv`, `pareto-{key}.csv`, plot `pareto-{key}.png`):\n\n")
            fh.write("| arch | inherited-weight accuracy | predicted latency (ms) | "
                     "multiply-adds | parameters |\n|---|---|---|---|---|\n")
            for c in front:
                fh.write(f"| `{c['arch']}` | {100 * float(c['accuracy']):.2f}% | "
                         f"{float(c['latency_ms']):.3f} | {c['macs']} | {c['params']} |\n")
        fh.write(PLOTS)


HEAD = """# Hardware-aware search on a chain space (mbv3_chain, Fashion-MNIST, CPU)

Produced by `scripts/chain` (which calls `scripts/chain_table.py`) on the `mbv3_chain` space
(6 searchable MBConv layers: kernel {{3,5,7}} x expansion {{3,4,6}}, plus skip on 3 of them;
729,000 architectures) at 1x28x28.

**Latency table.** `supernet profile` on {device}, {threads} thread, batch {batch}, median of
{repeats} timed forwards per entry (`lut.json`). Checked against {n} uniformly sampled whole
networks timed the same way: mean |relative error| **{mean:.1f}%**, max **{max:.1f}%**
(`latency-check.csv`).

**Searches.** The same first-order DARTS search on {subset} training images cut into weight
and architecture halves, {epochs} epochs of 20 steps, the alphas' Adam lr 3e-2, seed 2:
without a penalty, and with the hinge latency penalty `max(0, E/T - 1)` (weight 1) at the target
T = {fraction} x the unpenalised derived network's predicted latency = **{target:.3f} ms**. Each
derived network (argmax per layer) is timed whole against the table, then trained stand-alone
for {train} epochs on {train_subset} training images and tested on {test_subset} test images
(one seed). The third row is the most accurate architecture within the target on the Pareto
front of an evolution on an SPOS supernet (below), trained the same way.

"""

EVOLUTION = """
## Pareto fronts of multi-objective evolutions

`supernet evolve --run R --pareto --latency-table lut.json --population 20 --generations 6`:
NSGA-II selection on (inherited-weight accuracy on the architecture half, BN statistics
recalibrated per candidate; predicted latency), on the SPOS supernet (every path trained on
its own) and on the unpenalised first-order supernet (weights trained under the mixture).
"""

PLOTS = """
Per-layer choice probabilities over the searches (`supernet plot`): without the penalty
![choices, no penalty](plain-choices.png) and with it ![choices, latency penalty](latency-choices.png).

Pareto fronts: SPOS ![Pareto front, SPOS](pareto-spos.png) and first order
![Pareto front, first order](pareto-plain.png)
"""

if __name__ == "__main__":
    main()
