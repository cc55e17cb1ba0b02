"""Summarise scripts/trust: every scorer's agreement with the ground-truth table, from the
`fidelity-truth.csv` that `supernet rank-check --ground-truth` writes in each run, into one
table (OUT/fidelity.csv and the table part of OUT/README.md), and each scorer's scatter plot
copied as OUT/scatter-RUN-SAMPLES.png.
    .venv/bin/python scripts/trust_table.py RUNS_DIR OUT_DIR RUN [RUN ...]
"""
import csv
import os
import shutil
import sys

MEASURES = ["kendall_tau", "sparse_kendall_tau", "spearman_rho", "top_overlap", "top_kendall_tau"]


def number(v):
    return "undefined" if v in ("", "nan", "NaN") else f"{float(v):.3f}"


def main(runs, out, names):
    os.makedirs(out, exist_ok=True)
    rows = []
    for run in names:
        path = os.path.join(runs, run, "fidelity-truth.csv")
        if not os.path.exists(path):
            sys.exit(f"trust_table: {path} is missing (run scripts/trust first)")
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                r["run"] = run
                rows.append(r)
                plot = os.path.join(runs, run, "plots", f"rank_check-truth-{r['samples']}")
                proxy = r["scorer"].replace("-", "_")
                for candidate in (plot + ".png", f"{plot}-{proxy}.png"):
                    if os.path.exists(candidate):
                        shutil.copyfile(candidate, os.path.join(out, f"scatter-{run}-{r['samples']}.png"))
    def best_first(r):
        tau = float(r["kendall_tau"] or "nan")
        return (tau != tau, -tau if tau == tau else 0.0)

    rows.sort(key=best_first)
    with open(os.path.join(out, "fidelity.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "samples", "scorer", "architectures"] + MEASURES
                   + ["ceiling_kendall_tau", "ceiling_spearman_rho"])
        for r in rows:
            w.writerow([r["run"], r["samples"], r["scorer"], r["architectures"]]
                       + [r[m] for m in MEASURES] + [r["ceiling_kendall_tau"], r["ceiling_spearman_rho"]])
    lines = ["| supernet run | scorer | architectures | Kendall tau | sparse tau | Spearman rho "
             "| top-k overlap | top-k tau | seed-vs-seed tau (ceiling) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['scorer']} | {r['architectures']} | "
                     + " | ".join(number(r[m]) for m in MEASURES)
                     + f" | {number(r['ceiling_kendall_tau'])} |")
    with open(os.path.join(out, "fidelity.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(os.path.join(out, "fidelity.md"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
