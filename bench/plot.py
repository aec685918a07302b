"""Draw bench/run.py's results: how close Signet comes to nginx and the Python floors.

    python bench/run.py --quick --plot out.svg          # run, then draw
    python bench/plot.py results.json out.svg           # draw a saved --json run

Two panels: req/s per target at each concurrency (grouped bars, p99 in the
label), and each ratio of the run against 1.0. Only ratios from one run are
comparable, so one figure is one run. Needs matplotlib: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def plot(results: dict[str, Any], out: str | Path) -> Path:
    """Write the figure to ``out`` (the format follows the suffix: .svg, .png, .pdf)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable, readable by tests

    params = results.get("params", {})
    conc: list[int] = params.get("concurrency") or [50, 10]
    http: dict[str, Any] = results["http"]
    ratios = {  # req/s ratios only: the p99 differences (in ms) are not on the same axis
        k: v for k, v in results.get("ratios", {}).items() if isinstance(v, int | float) and "ms" not in k
    }
    targets = list(http)

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, max(4.0, 0.45 * len(targets) + 1.5)), gridspec_kw={"width_ratios": [3, 2]}
    )
    height = 0.8 / len(conc)
    for i, c in enumerate(conc):
        rps = [(http[t].get(f"c{c}") or {}).get("rps", 0) for t in targets]
        ys = [n + i * height for n in range(len(targets))]
        bars = left.barh(ys, rps, height=height, label=f"c{c}")
        for bar, t in zip(bars, targets, strict=True):
            row = http[t].get(f"c{c}")
            if row:
                left.annotate(f" {row['rps']:.0f}  p99 {row['p99_ms']:.1f} ms",
                              (bar.get_width(), bar.get_y() + bar.get_height() / 2), fontsize=7, va="center")
    left.set_yticks([n + height * (len(conc) - 1) / 2 for n in range(len(targets))], targets)
    left.invert_yaxis()
    left.set_xlabel("requests/s (wrk -t1, median of rounds)")
    left.set_title("Throughput per target")
    left.legend(loc="lower right")

    names = list(ratios)
    right.barh(range(len(names)), [ratios[n] for n in names], color="tab:green")
    right.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    right.set_yticks(range(len(names)), names, fontsize=8)
    right.invert_yaxis()
    for n, name in enumerate(names):
        right.annotate(f" {ratios[name]:.2f}", (ratios[name], n), fontsize=7, va="center")
    right.set_title(f"Ratios at c{max(conc)} (1.0 = equal)")

    kind = "smoke" if params.get("smoke") else "quick" if params.get("quick") else "full"
    rounds = params.get("rounds", "?")
    fig.suptitle(f"Signet bench ({kind} run, {rounds} round{'' if rounds == 1 else 's'} of "
                 f"{params.get('duration_s', '?')} s per target)")
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Draw a saved bench/run.py --json result.")
    ap.add_argument("results", help="JSON written by bench/run.py --json")
    ap.add_argument("out", help="figure to write (.svg, .png, .pdf)")
    args = ap.parse_args(argv)
    print(f"wrote {plot(json.loads(Path(args.results).read_text()), args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
