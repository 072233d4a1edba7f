r"""Every predictor of finished runs side by side: the graph predictors (knn, lpa, mix; k and alpha chosen on
validation by `gloss evaluate`) against the head, and one method against another for every predictor.

    python scripts/graph_predict_report.py RUN_ROOT [RUN_ROOT ...] --out results/graph_predict
    python scripts/graph_predict_report.py runs/ --out report --pair gloss+ce-bank-test:gloss+ce-bank

A run root is a run folder, a folder of run folders, or a `gloss compare` output folder (its `runs/`). Writes
OUT/table.md and OUT/results.json (:mod:`pipeline.compare.predictors`). Runs evaluated before the graph
predictors existed (no predictors block) are skipped with a one-line warning naming them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.compare.predictors import UNLABELED_PAIR, write_predictor_report  # noqa: E402
from pipeline.errors import GlossError  # noqa: E402


def shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (so the recorded command does not
    name this machine's folders), else as given."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return path


def command_line(roots: list[str], out: str, pair: str, methods: str | None) -> str:
    """The command that remakes the report, without the interpreter's path."""
    words = ["python", "scripts/graph_predict_report.py", *map(shown, roots), "--out", shown(out)]
    words += [] if pair == ":".join(UNLABELED_PAIR) else ["--pair", pair]
    words += [] if methods is None else ["--methods", methods]
    return shlex.join(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", metavar="RUN_ROOT", help="Folders of finished runs.")
    parser.add_argument("--out", required=True, help="Folder for table.md and results.json.")
    parser.add_argument("--pair", default=":".join(UNLABELED_PAIR),
                        help="METHOD:BASELINE compared for every predictor (default: %(default)s).")
    parser.add_argument("--methods", help="Comma-separated methods to report (default: every method found).")
    args = parser.parse_args(argv)
    try:
        if args.pair.count(":") != 1 or not all(args.pair.split(":")):
            raise GlossError(f"--pair {args.pair}: expected METHOD:BASELINE, e.g. {':'.join(UNLABELED_PAIR)}")
        pair = tuple(args.pair.split(":"))
        methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
        results = write_predictor_report([shown(r) for r in args.roots], args.out,
                                         command_line(args.roots, args.out, args.pair, args.methods), pair=pair,
                                         methods=methods, warn=lambda line: print(line, file=sys.stderr))
    except GlossError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"graph_predict_report: {len(results['runs'])} runs, {len(results['rows'])} rows; wrote table.md and "
          f"results.json to {os.path.normpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
