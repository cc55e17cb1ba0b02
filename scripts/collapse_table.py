"""Summarise scripts/collapse: per method, the skip-connections and parameter-free ops of the
derived NAS-Bench-201 cell at every epoch end, the final genotype, why the search ended, and
the stand-alone test accuracy of the derived cell. Writes OUT/README.md, OUT/skips.csv and
each run's collapse plot as OUT/collapse-METHOD.png.
    .venv/bin/python scripts/collapse_table.py RUNS_DIR OUT_DIR
"""
import csv
import os
import shutil
import sys

import h5py

METHODS = [
    ("darts", "plain DARTS (first order)", ""),
    ("beta-darts", "beta-DARTS", "--beta-decay 25"),
    ("sdarts-rs", "SDARTS-RS", "--sdarts-epsilon 0.3"),
    ("darts-minus", "DARTS-", "--aux-skip"),
    ("darts-plus", "DARTS+ early stop", "--stop-at-skips 2"),
]
PARAMETER_FREE = ("skip_connect", "avg_pool_3x3", "none")


def edges(text):
    """The ops of an NB201 string |op~i|+|op~i|op~j|+|..., in edge order."""
    return [e.split("~")[0] for node in text.split("+") for e in node.strip("|").split("|")]


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main(runs, out):
    os.makedirs(out, exist_ok=True)
    rows, curves = [], {}
    for key, name, flags in METHODS:
        path = os.path.join(runs, key, "run.h5")
        if not os.path.exists(path):
            sys.exit(f"collapse_table: {path} is missing (run scripts/collapse first)")
        with h5py.File(path, "r") as f:
            genos = [text(g) for g in f["epochs/genotype"][:]]
            val = f["epochs/val_acc"][:]
            attrs = f["genotype"].attrs
            final = text(attrs["text"])
            stop = text(attrs["stop_reason"]) if "stop_reason" in attrs else ""
        skips = [edges(g).count("skip_connect") for g in genos]
        free = [sum(op in PARAMETER_FREE for op in edges(g)) for g in genos]
        curves[name] = skips
        train = os.path.join(runs, key, "train", "run.h5")
        with h5py.File(train, "r") as f:
            test = float(f["epochs/val_acc"][-1])
        rows.append({
            "method": name, "flags": flags or "(none)", "epochs": len(genos),
            "supernet_val_acc": f"{100 * val[-1]:.2f}", "skips_final": skips[-1],
            "skips_max": max(skips), "parameter_free_final": free[-1],
            "genotype": final, "standalone_test_acc": f"{100 * test:.2f}", "stop_reason": stop,
        })
        with open(os.path.join(out, "skips.csv"), "a" if len(rows) > 1 else "w", newline="") as fh:
            w = csv.writer(fh)
            if len(rows) == 1:
                w.writerow(["method", "epoch", "skip_connect", "parameter_free", "genotype"])
            for e, (s, p, g) in enumerate(zip(skips, free, genos), 1):
                w.writerow([key, e, s, p, g])
    for key, _, _ in METHODS:  # each run's collapse plot, side by side in the README
        shutil.copyfile(os.path.join(runs, key, "plots", "collapse.png"),
                        os.path.join(out, f"collapse-{key}.png"))
    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write(REPORT_HEAD)
        fh.write("| method | flags | epochs run | supernet val acc | skips at the end (max) | parameter-free ops at the end (of 6) | derived cell | stand-alone test acc |\n")
        fh.write("|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            end = r["epochs"] if not r["stop_reason"] else f"{r['epochs']} (stopped: {r['stop_reason']})"
            fh.write(f"| {r['method']} | `{r['flags']}` | {end} | {r['supernet_val_acc']}% | "
                     f"{r['skips_final']} ({r['skips_max']}) | {r['parameter_free_final']} | "
                     f"`{r['genotype']}` | {r['standalone_test_acc']}% |\n")
        fh.write("\nSkip-connections in the derived cell at each epoch end (of 6 edges):\n\n")
        fh.write("| method | " + " | ".join(f"{e}" for e in range(5, 51, 5)) + " |\n")
        fh.write("|---|" + "---|" * 10 + "\n")
        for name, s in curves.items():
            cells = [str(s[e - 1]) if e <= len(s) else "-" for e in range(5, 51, 5)]
            fh.write(f"| {name} | " + " | ".join(cells) + " |\n")
        fh.write("\nEvery epoch's counts and genotype: `skips.csv`. Each run's collapse plot "
                 "(`supernet plot`: mean alpha entropy and parameter-free kept ops over the "
                 "steps):\n\n")
        for key, name, _ in METHODS:
            fh.write(f"{name}: ![collapse plot, {name}](collapse-{key}.png)\n\n")
    print(os.path.join(out, "README.md"))


REPORT_HEAD = """# Collapse: plain DARTS and the remedies, small scale

Produced by `scripts/collapse` (which calls `scripts/collapse_table.py`): the NAS-Bench-201
space with 1 cell per stage and 8 channels, on 2560 Fashion-MNIST training images cut into
weight and architecture halves, 50 epochs of 20 first-order steps, the alphas' Adam lr 3e-2
(as in the main job), seed 2; then each derived cell trained stand-alone for 8 epochs on 20000
training images and tested on 5000 test images (one seed). This is a small-scale check that
fits 2 CPU cores in under half an hour, not the paper's CIFAR-10 setting.

"""

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
