"""Summarise scripts/collapse: per method, the skip-connections and parameter-free ops of the
derived cell (NAS-Bench-201: the 6 edges; DARTS space: the 8 kept edges of the normal cell) at
every epoch end, R-DARTS's dominant Hessian eigenvalue, the final genotype, why the search
ended, and the stand-alone test accuracy of the derived cell. Writes OUT/README.md,
OUT/skips.csv, OUT/hessian.csv and each search's collapse plot as OUT/collapse-METHOD.png.
    .venv/bin/python scripts/collapse_table.py SPACE RUNS_DIR OUT_DIR EPOCHS HESSIAN_EVERY \
        TRAIN_EPOCHS SUBSET TRAIN_SUBSET TEST_SUBSET STABLE_E TUNE_STEPS
SPACE is nb201 or darts; the rest is the scale scripts/collapse ran at, for the report.
"""
import csv
import math
import os
import re
import shutil
import sys

import h5py

# key, name, flags; darts-pt has no search of its own (derive on the plain DARTS run).
METHODS = {
    "nb201": [
        ("darts", "plain DARTS (first order)", ""),
        ("beta-darts", "beta-DARTS", "--beta-decay 25"),
        ("sdarts-rs", "SDARTS-RS", "--sdarts-epsilon 0.3"),
        ("darts-minus", "DARTS-", "--aux-skip"),
        ("darts-plus", "DARTS+ early stop (skips)", "--stop-at-skips 2"),
        ("darts-stable", "DARTS+ early stop (stable)", "--stop-when-stable {stable}"),
        ("darts-pt", "DARTS-PT (on plain DARTS)", "derive --rule perturbation --tune-steps {tune}"),
    ],
    "darts": [
        ("darts", "plain DARTS (first order)", ""),
        ("beta-darts", "beta-DARTS", "--beta-decay 25"),
        ("sdarts-rs", "SDARTS-RS", "--sdarts-epsilon 0.3"),
        ("darts-pt", "DARTS-PT (on plain DARTS)", "derive --rule perturbation --tune-steps {tune}"),
    ],
}
PARAMETER_FREE = ("skip_connect", "avg_pool_3x3", "max_pool_3x3", "none")
KEPT = {"nb201": 6, "darts": 8}


def nb201_ops(text):
    """The ops of an NB201 string |op~i|+|op~i|op~j|+|..., in edge order."""
    return [e.split("~")[0] for node in text.split("+") for e in node.strip("|").split("|")]


def darts_normal_ops(text):
    """The ops of the normal cell of a DARTS Genotype(normal=[('op', i), ...], ...) string."""
    normal = text.split("reduce=")[0]
    return re.findall(r"\('([a-z0-9_]+)',\s*\d+\)", normal)


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def fmt(v):
    return "-" if v is None or math.isnan(v) else f"{v:.3g}"


def hessian_summary(eig):
    """First and last recorded eigenvalue, and the largest ratio of one to the smallest recorded
    before it (the running minimum of the search's warning), with the epoch where it occurred."""
    seen = [(e, v) for e, v in enumerate(eig, 1) if not math.isnan(v)]
    if not seen:
        return None, None, None, None
    best, at, low = None, None, seen[0][1]
    for e, v in seen[1:]:
        r = v / low
        if best is None or r > best:
            best, at = r, e
        low = min(low, v)
    return seen[0][1], seen[-1][1], best, at


def main(space, runs, out, epochs, hessian_every, train_epochs, subset, train_subset,
         test_subset, stable, tune):
    epochs, hessian_every, kept = int(epochs), int(hessian_every), KEPT[space]
    ops_of = nb201_ops if space == "nb201" else darts_normal_ops
    os.makedirs(out, exist_ok=True)
    rows, skip_curves, eig_curves, searched = [], {}, {}, []
    skips_rows, eig_rows = [], []
    for key, name, flags in METHODS[space]:
        run = os.path.join(runs, key)
        if key == "darts-pt":
            with open(os.path.join(run, "genotype.txt")) as fh:
                final = fh.read().strip()
            base = rows[0]  # the plain DARTS search it selects from
            ops = ops_of(final)
            shutil.copyfile(os.path.join(run, "perturbation.csv"),
                            os.path.join(out, "perturbation.csv"))
            row = dict(base, method=name, genotype=final, epochs=f"{base['epochs']} (plain DARTS's)",
                       skips_final=ops.count("skip_connect"), skips_max="-",
                       parameter_free_final=sum(op in PARAMETER_FREE for op in ops),
                       eig="(that of plain DARTS)", stop_reason="")
        else:
            path = os.path.join(run, "run.h5")
            if not os.path.exists(path):
                sys.exit(f"collapse_table: {path} is missing (run scripts/collapse first)")
            with h5py.File(path, "r") as f:
                genos = [text(g) for g in f["epochs/genotype"][:]]
                val = f["epochs/val_acc"][:]
                # absent when no epoch reached --hessian-every (a run shorter than N epochs)
                eig = ([float(v) for v in f["epochs/hessian_eigenvalue"][:]]
                       if "epochs/hessian_eigenvalue" in f else [math.nan] * len(genos))
                attrs = f["genotype"].attrs
                final = text(attrs["text"])
                stop = text(attrs["stop_reason"]) if "stop_reason" in attrs else ""
            ops = [ops_of(g) for g in genos]
            skips = [o.count("skip_connect") for o in ops]
            free = [sum(op in PARAMETER_FREE for op in o) for o in ops]
            skip_curves[name], eig_curves[name] = skips, eig
            searched.append((key, name))
            start, end, ratio, at = hessian_summary(eig)
            eig_cell = "-" if start is None else (
                f"{fmt(start)} / {fmt(end)} ({fmt(ratio)}x, epoch {at})" if ratio is not None
                else f"{fmt(start)} / {fmt(end)}")
            row = {"epochs": len(genos), "supernet_val_acc": f"{100 * val[-1]:.2f}",
                   "skips_final": skips[-1], "skips_max": max(skips),
                   "parameter_free_final": free[-1], "genotype": final, "eig": eig_cell,
                   "stop_reason": stop, "method": name}
            for e, (s, p, g, v) in enumerate(zip(skips, free, genos, eig), 1):
                skips_rows.append([key, e, s, p, g])
                if not math.isnan(v):
                    eig_rows.append([key, e, f"{v:.6g}"])
        row["flags"] = flags.format(stable=stable, tune=tune) or "(none)"
        row["standalone_test_acc"] = "not trained"
        if os.path.exists(os.path.join(run, "train", "model", "model.json")):
            with h5py.File(os.path.join(run, "train", "run.h5"), "r") as f:
                row["standalone_test_acc"] = f"{100 * float(f['epochs/val_acc'][-1]):.2f}%"
        rows.append(row)
    with open(os.path.join(out, "skips.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "epoch", "skip_connect", "parameter_free", "genotype"])
        w.writerows(skips_rows)
    with open(os.path.join(out, "hessian.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "epoch", "hessian_eigenvalue"])
        w.writerows(eig_rows)
    for key, _ in searched:  # each search's collapse plot, side by side in the README
        shutil.copyfile(os.path.join(runs, key, "plots", "collapse.png"),
                        os.path.join(out, f"collapse-{key}.png"))
    cell = "6 edges" if space == "nb201" else "8 kept edges of the normal cell"
    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write(HEAD[space].format(epochs=epochs, hessian=hessian_every, train=train_epochs,
                                    subset=subset, train_subset=train_subset,
                                    test_subset=test_subset, stable=stable, tune=tune))
        fh.write(f"| method | flags | epochs run | supernet val acc | skips at the end (max) | "
                 f"parameter-free ops at the end (of {kept}) | Hessian eigenvalue first / last "
                 f"(max ratio to running min, at epoch) | derived cell | stand-alone test acc |\n")
        fh.write("|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            end = r["epochs"] if not r["stop_reason"] else f"{r['epochs']} (stopped: {r['stop_reason']})"
            fh.write(f"| {r['method']} | `{r['flags']}` | {end} | {r['supernet_val_acc']}% | "
                     f"{r['skips_final']} ({r['skips_max']}) | {r['parameter_free_final']} | "
                     f"{r['eig']} | `{r['genotype']}` | {r['standalone_test_acc']} |\n")
        marks = list(range(max(1, epochs // 10), epochs + 1, max(1, epochs // 10)))
        fh.write(f"\nSkip-connections in the derived cell at epoch ends (of its {cell}):\n\n")
        fh.write("| method | " + " | ".join(str(e) for e in marks) + " |\n")
        fh.write("|---|" + "---|" * len(marks) + "\n")
        for name, s in skip_curves.items():
            cells = [str(s[e - 1]) if e <= len(s) else "-" for e in marks]
            fh.write(f"| {name} | " + " | ".join(cells) + " |\n")
        eig_marks = list(range(hessian_every, epochs + 1, hessian_every))
        if len(eig_marks) > 13:  # keep the table readable; hessian.csv has every value
            step = -(-len(eig_marks) // 10) * hessian_every
            eig_marks = list(range(step, epochs + 1, step))
        if eig_marks:
            fh.write(f"\nDominant Hessian eigenvalue of the validation loss w.r.t. the alphas (computed "
                     f"every {hessian_every} epochs; every value in `hessian.csv`):\n\n")
            fh.write("| method | " + " | ".join(str(e) for e in eig_marks) + " |\n")
            fh.write("|---|" + "---|" * len(eig_marks) + "\n")
            for name, v in eig_curves.items():
                cells = [fmt(v[e - 1]) if e <= len(v) else "-" for e in eig_marks]
                fh.write(f"| {name} | " + " | ".join(cells) + " |\n")
        fh.write("\nDARTS-PT's every measurement (round, cell, edge, op removed, supernet "
                 "accuracy without it, drop, chosen): `perturbation.csv`.\n")
        fh.write("\nEvery epoch's counts and genotype: `skips.csv`. Each search's collapse plot "
                 "(`supernet plot`: mean alpha entropy, parameter-free kept ops and the Hessian "
                 "eigenvalue over the steps):\n\n")
        for key, name in searched:
            fh.write(f"{name}: ![collapse plot, {name}](collapse-{key}.png)\n\n")
    print(os.path.join(out, "README.md"))


HEAD = {
    "nb201": """# Collapse: plain DARTS and the remedies, small scale

Produced by `scripts/collapse` (which calls `scripts/collapse_table.py`): the NAS-Bench-201
space with 1 cell per stage and 8 channels, on {subset} Fashion-MNIST training images cut into
weight and architecture halves, {epochs} first-order epochs (batch 64), the alphas' Adam lr 3e-2 (as in the
main job), seed 2, R-DARTS's dominant Hessian eigenvalue every {hessian} epochs; then each
derived cell trained stand-alone for {train} epochs on {train_subset} training images and tested
on {test_subset} test images (one seed). DARTS+'s stability rule with
E = {stable}; DARTS-PT selects from the plain DARTS supernet with {tune} fine-tuning steps per
decision. This is a small-scale check on 2 shared CPU cores, not the paper's CIFAR-10 setting.

""",
    "darts": """# Collapse on the DARTS space: plain DARTS and the remedies, reduced size

Produced by `COLLAPSE_SPACE=darts scripts/collapse` (which calls `scripts/collapse_table.py`):
the full DARTS cell (8 ops, 14 edges) in `supernets/fmnist_small.toml` (3 cells, 4 channels)
on {subset} Fashion-MNIST training images cut into weight and architecture halves, {epochs}
first-order epochs (batch 64), R-DARTS's dominant Hessian eigenvalue every {hessian} epochs; then each
derived cell trained stand-alone in an 8-cell, 16-channel network for {train} epochs on
{train_subset} training images and tested on {test_subset} test images (one seed).
DARTS-PT selects from the plain DARTS supernet with {tune} fine-tuning steps per decision.
Counts are of the normal cell's 8 kept edges; parameter-free ops are none, the pools and
skip connections. A small-scale check on 2 shared CPU cores, not the paper's setting.

""",
}

if __name__ == "__main__":
    if len(sys.argv) != 12:
        sys.exit(__doc__)
    main(*sys.argv[1:])
