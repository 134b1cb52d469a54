"""Collect the study's run folders (``scripts/study.py``) into ``results/`` and ``exports/runs/``.

    python scripts/collect_study.py runs/study

Writes:
* ``results/study-diagnosis.json``: every diagnosed configuration (seed 0) with its validation
  metrics, validation Delta_MTL on the paper's metric set and on all metrics, its test metrics, and
  its per-epoch curves (training loss, validation metrics);
* ``results/study-choice.json``: the rule, the candidates' validation scores, the chosen one, the jobs;
* ``results/synthetic-<setting>.json``: the final study on the test scenes, per method the per-seed
  metrics, per-seed Delta_MTL (paper set and all metrics), mean and standard deviation over seeds;
* ``results/tables.md`` and ``results/curves.md`` (+ ``results/curves.png`` where matplotlib is
  installed): the tables and curves README quotes;
* ``exports/runs/synthetic-<setting>-seed<k>/``: run records for the dashboard's Metrics view.

Every figure is recomputed from the runs' ``metrics.json`` and ``log.jsonl``; nothing is typed in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from study import CANDIDATES, FEW_SHOT, SCHEDULE_FACTOR, SETTINGS, recipe_only, schedule  # noqa: E402

from hitts_schema import DELTA_ALL_KEY, DELTA_KEY, METHODS, delta_mtl, metric_set_for, val_metrics  # noqa: E402

FINAL_METHODS = ("stl", "mtl", "hitts", "hitts_lf", "hitts_lp", "hitts_pseudo", "hitts_no_oe")
HIGHLIGHT = {
    "stl": "0.4",
    "mtl": "tab:blue",
    "hitts": "tab:orange",
    "gate_scale": "tab:green",
    "3x schedule": "tab:red",
    "mtl (3x schedule)": "tab:purple",
}
"""Drawn bold in results/curves.png; every other configuration thin and dotted."""
CURVE_KEYS = ("train/total", "val/semseg/miou", "val/depth/abs_err", "val/normals/mean_angle")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def read_log(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def runs_of(out: Path) -> list[dict]:
    """Every finished method run: setting, seed, method, overrides, metrics, log."""
    found = []
    for metrics_file in sorted(out.glob("*/seed*/*/*/metrics.json")):
        run_dir = metrics_file.parent
        folder = run_dir.parent
        overrides = tuple(read_json(folder / "overrides.json") or ())
        found.append(
            {
                "setting": folder.parents[1].name,
                "seed": int(folder.parent.name.removeprefix("seed")),
                "method": run_dir.name,
                "overrides": overrides,
                "result": read_json(metrics_file),
                "log": read_log(run_dir / "log.jsonl"),
                "transfer": read_json(run_dir / "transfer-nyuv2-mini.json"),
            }
        )
    return found


def find(runs: list[dict], setting: str, seed: int, method: str, overrides: tuple[str, ...]) -> dict | None:
    key = tuple(sorted(overrides))
    for r in runs:
        if (r["setting"], r["seed"], r["method"], tuple(sorted(r["overrides"]))) == (
            setting,
            seed,
            method,
            key,
        ):
            return r
    return None


def deltas(metrics: dict, reference: dict, setting: str) -> dict[str, float]:
    return {
        DELTA_KEY: delta_mtl(metrics, reference, metric_set_for("synthetic", setting)),
        DELTA_ALL_KEY: delta_mtl(metrics, reference),
    }


def curves(run: dict, stl_val: dict | None, setting: str) -> list[dict]:
    """Per epoch: training loss, validation metrics and validation Delta_MTL (paper set)."""
    out = []
    for rec in run["log"]:
        val = val_metrics(rec)
        row = {"epoch": rec["epoch"] + 1, **{k: rec[k] for k in CURVE_KEYS if k in rec}}
        if val and stl_val:
            row["val/delta_mtl"] = delta_mtl(val, stl_val, metric_set_for("synthetic", setting))
        out.append(row)
    return out


def diagnosis(runs: list[dict]) -> dict:
    """Seed-0 configurations of the diagnose and combine phases, on the validation split."""
    names = {tuple(sorted(v)): k for k, v in CANDIDATES.items()}
    names[tuple(sorted(schedule(SCHEDULE_FACTOR)))] = f"{SCHEDULE_FACTOR}x schedule"
    table: dict[str, list] = {}
    for setting in SETTINGS:
        stl = find(runs, setting, 0, "stl", ())
        rows = []
        for r in runs:
            if r["setting"] != setting or r["seed"] != 0 or METHODS[r["method"]].stage != 1 or not stl:
                continue
            variant = names.get(tuple(sorted(r["overrides"])), "+".join(r["overrides"]) or "hitts")
            if r["method"] != "hitts" and not r["overrides"]:
                variant = r["method"]
            elif r["method"] != "hitts":
                variant = f"{r['method']} ({variant})"
            res, ref = r["result"], stl["result"]
            rows.append(
                {
                    "config": variant,
                    "method": r["method"],
                    "overrides": list(r["overrides"]),
                    "val_metrics": res["val_metrics"],
                    "val": deltas(res["val_metrics"], ref["val_metrics"], setting),
                    "test_metrics": res["test_metrics"],
                    "test": deltas(res["test_metrics"], ref["test_metrics"], setting),
                    "wall_time_s": res.get("wall_time_s"),
                    "curves": curves(r, ref["val_metrics"], setting),
                }
            )
        table[setting] = sorted(rows, key=lambda row: -row["val"][DELTA_KEY])
    return table


def final_rows(chosen: tuple[str, ...]) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """(row key, label, run root: "gpu" | "cpu", method, overrides) of the final tables, in order."""
    base = recipe_only(chosen)
    return [
        ("stl", "STL", "gpu", "stl", base),
        ("mtl", "MTL", "gpu", "mtl", base),
        ("hitts_plain", "HiTTs (paper default, no gate scale)", "gpu", "hitts", base),
        ("hitts", "HiTTs (chosen configuration)", "gpu", "hitts", chosen),
        (
            "hitts_cpu_teacher",
            "HiTTs (chosen), retrained on CPU as the stage-2 teacher",
            "cpu",
            "hitts",
            chosen,
        ),
        ("hitts_lf", "HiTTs + L_f (CPU)", "cpu", "hitts_lf", chosen),
        ("hitts_lp", "HiTTs + L_p (CPU)", "cpu", "hitts_lp", chosen),
        ("hitts_pseudo", "HiTTs + L_p + L_f (CPU)", "cpu", "hitts_pseudo", chosen),
        ("hitts_no_oe", "HiTTs w/o OE (CPU)", "cpu", "hitts_no_oe", chosen),
    ]


def final(runs: dict[str, list[dict]], chosen: tuple[str, ...]) -> dict:
    """The final study on the test scenes, per setting and row, every seed kept. The STL reference
    is the GPU run of the same seed and setting for every row."""
    out = {}
    for setting in (*SETTINGS, FEW_SHOT):
        methods: dict[str, Any] = {}
        for key, label, root, method, over in final_rows(chosen):
            per_seed = {}
            for seed in range(10):
                run = find(runs[root], setting, seed, method, over)
                stl = find(runs["gpu"], setting, seed, "stl", recipe_only(chosen))
                if not run or not stl:
                    continue
                metrics = run["result"]["test_metrics"]
                per_seed[seed] = {
                    "metrics": metrics,
                    **deltas(metrics, stl["result"]["test_metrics"], setting),
                }
            if per_seed:
                values = [s[DELTA_KEY] for s in per_seed.values()]
                methods[key] = {
                    "label": label,
                    "method": method,
                    "hardware": "H200 (bf16 autocast)" if root == "gpu" else "2-core CPU (fp32)",
                    "overrides": list(over),
                    "seeds": sorted(per_seed),
                    "per_seed": per_seed,
                    f"{DELTA_KEY}_mean": statistics.fmean(values),
                    f"{DELTA_KEY}_std": statistics.stdev(values) if len(values) > 1 else None,
                    f"{DELTA_ALL_KEY}_mean": statistics.fmean(s[DELTA_ALL_KEY] for s in per_seed.values()),
                    "mean_metrics": mean_metrics([s["metrics"] for s in per_seed.values()]),
                }
        if methods:
            out[setting] = {
                **methods,
                "_meta": {
                    "dataset": "synthetic",
                    "setting": setting,
                    "split": "test scenes (654), evaluated once per run after training",
                    "delta_mtl_metrics": [f"{t}/{m}" for t, m in metric_set_for("synthetic", setting)],
                    "reference": "STL of the same seed and setting (GPU run)",
                    "overrides": list(chosen),
                },
            }
    return out


def mean_metrics(entries: list[dict]) -> dict:
    return {t: {m: statistics.fmean(e[t][m] for e in entries) for m in entries[0][t]} for t in entries[0]}


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:+.{digits}f}"


def tables_md(diag: dict, fin: dict, choice: dict) -> str:
    lines = ["# The study (generated by scripts/collect_study.py from the run folders; do not edit)", ""]
    lines += [
        f"Choice rule: {choice['rule']}. Chosen: **{choice['chosen']}** "
        f"(`{' '.join(choice['overrides']) or 'no override'}`).",
        "",
    ]
    for setting, rows in diag.items():
        lines += [
            f"## Diagnosis, {setting}, seed 0: validation split (120 held-out training scenes)",
            "",
            "| configuration | val Delta_MTL (Table 1 set) | val Delta_MTL (all 11) | val mIoU | val depth abs | "
            "val normals mErr | test Delta_MTL (Table 1 set) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            v = r["val_metrics"]
            lines.append(
                f"| {r['config']} | {fmt(r['val'][DELTA_KEY])} | {fmt(r['val'][DELTA_ALL_KEY])} | "
                f"{v['semseg']['miou']:.2f} | {v['depth']['abs_err']:.4f} | {v['normals']['mean_angle']:.2f} | "
                f"{fmt(r['test'][DELTA_KEY])} |"
            )
        lines.append("")
    for setting, block in fin.items():
        lines += [
            f"## Final study, {setting}: test scenes, chosen configuration",
            "",
            "| method | seeds | mIoU | pAcc | depth abs | depth rmse | normals mErr | within 11.25 | "
            "Delta_MTL (Table 1 set) mean ± std | per seed | Delta_MTL (all 11) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, r in block.items():
            if method.startswith("_"):
                continue
            m = r["mean_metrics"]
            std = r[f"{DELTA_KEY}_std"]
            per = ", ".join(fmt(s[DELTA_KEY]) for s in r["per_seed"].values())
            lines.append(
                f"| {r['label']} | {len(r['seeds'])} | {m['semseg']['miou']:.2f} | {m['semseg']['pacc']:.2f} | "
                f"{m['depth']['abs_err']:.4f} | {m['depth']['rmse']:.4f} | {m['normals']['mean_angle']:.2f} | "
                f"{m['normals']['within_11_25']:.2f} | {fmt(r[f'{DELTA_KEY}_mean'])}"
                f"{'' if std is None else f' ± {std:.2f}'} | {per} | {fmt(r[f'{DELTA_ALL_KEY}_mean'])} |"
            )
        lines += ["", *paired_lines(block), ""]
    return "\n".join(lines)


PAIRS = (
    ("hitts_plain", "mtl", "HiTTs (paper default) minus MTL"),
    ("hitts", "mtl", "HiTTs (chosen) minus MTL"),
    ("hitts_pseudo", "hitts_cpu_teacher", "HiTTs + L_p + L_f minus its own (CPU) teacher"),
)
"""The orderings the study tests, as paired per-seed differences (same seed, split and reference)."""


def paired_lines(block: dict) -> list[str]:
    """Per-seed differences of Delta_MTL between the rows of ``PAIRS`` that share seeds."""
    out = []
    for a, b, label in PAIRS:
        if a not in block or b not in block:
            continue
        seeds = sorted(set(block[a]["per_seed"]) & set(block[b]["per_seed"]), key=int)
        diffs = [block[a]["per_seed"][s][DELTA_KEY] - block[b]["per_seed"][s][DELTA_KEY] for s in seeds]
        if diffs:
            spread = f", std {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
            out.append(
                f"- {label}, per seed: {', '.join(fmt(d) for d in diffs)} "
                f"(mean {fmt(statistics.fmean(diffs))}{spread})"
            )
    return out


DIAGNOSIS_LABELS = {
    "mtl (3x schedule)": "MTL, 3x schedule (24 epochs)",
    "3x schedule": "HiTTs, 3x schedule",
    "gate_scale": "HiTTs + gate scale",
    "hitts_no_global": "HiTTs w/o global tokens",
    "stl": "STL",
    "mtl": "MTL",
    "authors_loss": "HiTTs, authors' loss form",
    "bypass": "HiTTs, head reads F_s",
    "small_init": "HiTTs, tokens N(0, 0.05^2)",
    "hitts_no_intra": "HiTTs w/o intra-task",
    "hitts": "**HiTTs** (paper default)",
    "clip10": "HiTTs, gradient clipping 10",
    "frozen_tokens": "HiTTs, tokens not trained",
    "hitts_no_fine": "HiTTs w/o fine tokens",
    "attn_keys": "HiTTs, 192 attention keys (r = 1)",
    "lr_half": "HiTTs, lr halved",
    "hitts_no_inter": "HiTTs w/o inter-task",
}
"""Diagnosis configuration -> its README label (a configuration not listed keeps its own name)."""
README_DIAGNOSIS_SETTING = "one-label"


def readme_diagnosis(diag: dict, chosen: str) -> str:
    """README's diagnosis table (``README_DIAGNOSIS_SETTING``, validation) and one line per other
    setting, from ``study-diagnosis.json``; the ``chosen`` configuration is marked."""
    head = (
        "| configuration | val Delta_MTL | val mIoU | val depth abs | val normals mErr | last training loss |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for r in diag[README_DIAGNOSIS_SETTING]:
        label = DIAGNOSIS_LABELS.get(r["config"], r["config"])
        delta = fmt(r["val"][DELTA_KEY])
        if r["config"] == chosen:
            label, delta = f"{label} (chosen)", f"**{delta}**"
        # another loss form's total is on another scale: not comparable
        other_loss = any(o.startswith("loss.") for o in r["overrides"])
        loss = "(other loss)" if other_loss else f"{r['curves'][-1]['train/total']:.3f}"
        v = r["val_metrics"]
        lines.append(
            f"| {label} | {delta} | {v['semseg']['miou']:.2f} | {v['depth']['abs_err']:.4f} | "
            f"{v['normals']['mean_angle']:.2f} | {loss} |"
        )
    lines += ["", *schedule_gaps(diag[README_DIAGNOSIS_SETTING])]
    for setting, rows in diag.items():
        if setting != README_DIAGNOSIS_SETTING:
            cells = ", ".join(
                f"{DIAGNOSIS_LABELS.get(r['config'], r['config']).replace('**', '')} {fmt(r['val'][DELTA_KEY])}"
                for r in rows
            )
            lines += ["", f"{setting.capitalize()}, seed 0, validation Delta_MTL: {cells}."]
    return "\n".join(lines)


def schedule_gaps(rows: list[dict]) -> list[str]:
    """HiTTs minus MTL in validation Delta_MTL at the study's schedule and at ``SCHEDULE_FACTOR`` times
    it: the long-schedule rows are measured against the short-schedule STL, so only their difference
    compares."""
    delta = {r["config"]: r["val"][DELTA_KEY] for r in rows}
    long_hitts, long_mtl = f"{SCHEDULE_FACTOR}x schedule", f"mtl ({SCHEDULE_FACTOR}x schedule)"
    if not {"hitts", "mtl", long_hitts, long_mtl} <= set(delta):
        return []
    return [
        f"HiTTs minus MTL, validation Delta_MTL: {fmt(delta['hitts'] - delta['mtl'])} at the study's schedule, "
        f"{fmt(delta[long_hitts] - delta[long_mtl])} at {SCHEDULE_FACTOR}x it."
    ]


def readme_blocks(results: Path) -> dict[str, str]:
    """README's generated blocks (each between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``) by
    name, from the committed ``results/`` only (no run folder needed)."""
    tables = (results / "tables.md").read_text()
    final = tables[tables.index("## Final study") :].replace("## Final study", "##### Final study")
    choice = read_json(results / "study-choice.json") or {}
    diag = read_json(results / "study-diagnosis.json") or {}
    return {"study-diagnosis": readme_diagnosis(diag, choice.get("chosen", "")), "study-final": final.strip()}


def update_readme(readme: Path, blocks: dict[str, str]) -> None:
    """Put each generated block between its README markers (the figures README quotes)."""
    text = readme.read_text()
    for name, body in blocks.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in text or end not in text:
            raise SystemExit(f"error: {readme} has no {start} ... {end} block")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{body}\n{end}{tail}"
    readme.write_text(text)


def curves_md(diag: dict) -> str:
    lines = ["# Learning curves (seed 0, validation split; generated by scripts/collect_study.py)", ""]
    for setting, rows in diag.items():
        for r in rows:
            lines += [
                f"## {setting}: {r['config']}",
                "",
                "| epoch | train total loss | val mIoU | val depth abs | val normals mErr | val Delta_MTL |",
                "|---|---|---|---|---|---|",
            ]
            for c in r["curves"]:
                lines.append(
                    f"| {c['epoch']} | {c.get('train/total', float('nan')):.4f} | "
                    f"{c.get('val/semseg/miou', float('nan')):.2f} | {c.get('val/depth/abs_err', float('nan')):.4f} | "
                    f"{c.get('val/normals/mean_angle', float('nan')):.2f} | {fmt(c.get('val/delta_mtl'))} |"
                )
            lines.append("")
    return "\n".join(lines)


def plot_curves(diag: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(diag), 2, figsize=(13, 4.5 * len(diag)), squeeze=False)
    for row, (setting, rows) in enumerate(diag.items()):
        for r in rows:
            epochs = [c["epoch"] for c in r["curves"]]
            main = r["config"] in HIGHLIGHT
            style = {
                "lw": 2.2 if main else 0.9,
                "alpha": 1.0 if main else 0.45,
                "ls": "-" if main else ":",
                "color": HIGHLIGHT.get(r["config"]),
            }
            if r["config"] != "authors_loss":  # another loss: its training loss is on another scale
                axes[row][0].plot(
                    epochs, [c.get("train/total") for c in r["curves"]], label=r["config"], **style
                )
            axes[row][1].plot(
                epochs, [c.get("val/delta_mtl") for c in r["curves"]], label=r["config"], **style
            )
        axes[row][0].set(title=f"{setting}: training loss", xlabel="epoch")
        axes[row][1].set(title=f"{setting}: validation Delta_MTL (Table 1 set, vs STL)", xlabel="epoch")
        axes[row][1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return True


def dashboard_records(runs: dict[str, list[dict]], fin: dict, chosen: tuple[str, ...], exports: Path) -> None:
    for setting, block in fin.items():
        seeds = sorted(block["stl"]["seeds"]) if "stl" in block else []
        for seed in seeds:
            rec: dict[str, Any] = {}
            log: list[dict] = []
            for key, _, root, method, over in final_rows(chosen):
                r = block.get(key)
                if r is None or seed not in r["per_seed"] or key in ("hitts_plain", "hitts_cpu_teacher"):
                    continue
                s = r["per_seed"][seed]
                rec[method] = {**s["metrics"], DELTA_KEY: s[DELTA_KEY], DELTA_ALL_KEY: s[DELTA_ALL_KEY]}
                run = find(runs[root], setting, seed, method, over)
                log += [{"method": method, **line} for line in (run["log"] if run else [])]
            rec["_meta"] = {
                "dataset": "synthetic",
                "setting": setting,
                "seed": seed,
                "split": "test",
                "overrides": list(chosen),
                "hardware": {block[k]["method"]: block[k]["hardware"] for k in block if k in rec},
                "note": "stage-2 rows: CPU runs with a CPU-retrained teacher (results/tables.md)",
            }
            folder = exports / f"synthetic-{setting}-seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "metrics.json").write_text(json.dumps(rec, indent=1))
            (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in log))


def complete_choice(runs: Path) -> dict:
    """The declared rule applied again once every diagnosis run had finished (the first call's
    diagnosis window closed before any run ended, so its executed choice fell back to plain HiTTs)."""
    from study import Study, main_parser

    best, overrides, scores = Study(main_parser().parse_args(["--out", str(runs)])).choose()
    executed = read_json(runs / "choice.json") or {}
    return {
        "executed_choice": {k: executed.get(k) for k in ("chosen", "overrides", "validation_delta_mtl")},
        "chosen": best,
        "overrides": list(overrides),
        "validation_delta_mtl": scores,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="?", help="the GPU study's run folders (scripts/study.py)")
    p.add_argument("--stage2-runs", type=Path, help="the CPU stage-2 run folders (scripts/study_stage2.py)")
    p.add_argument("--results", type=Path, default=REPO / "results")
    p.add_argument("--exports", type=Path, default=REPO / "exports" / "runs")
    p.add_argument("--readme", type=Path, help="also write the study's tables into this README's blocks")
    p.add_argument(
        "--readme-only",
        action="store_true",
        help="only rewrite --readme's blocks from the committed --results",
    )
    args = p.parse_args(argv)
    if args.readme_only or args.runs is None:
        if not (args.readme_only and args.readme):
            p.error("give the run folders, or --readme-only with --readme")
        update_readme(args.readme, readme_blocks(args.results))
        return 0
    choice = read_json(args.runs / "choice.json")
    if choice is None:
        raise SystemExit(f"error: {args.runs / 'choice.json'} missing: run scripts/study.py first")
    runs = {"gpu": runs_of(args.runs), "cpu": runs_of(args.stage2_runs) if args.stage2_runs else []}
    choice = {**choice, **complete_choice(args.runs)}
    chosen = tuple(choice["overrides"])
    diag, fin = diagnosis(runs["gpu"]), final(runs, chosen)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "study-diagnosis.json").write_text(json.dumps(diag, indent=1))
    jobs = read_json(args.runs / "jobs.json")
    (args.results / "study-choice.json").write_text(json.dumps({**choice, "jobs": jobs}, indent=1))
    for setting, block in fin.items():
        (args.results / f"synthetic-{setting}.json").write_text(json.dumps(block, indent=1))
    tables = tables_md(diag, fin, choice)
    (args.results / "tables.md").write_text(tables)
    if args.readme:
        update_readme(args.readme, readme_blocks(args.results))
    (args.results / "curves.md").write_text(curves_md(diag))
    plot_curves(diag, args.results / "curves.png")
    dashboard_records(runs, fin, chosen, args.exports)
    print(f"{len(runs['gpu'])} GPU and {len(runs['cpu'])} CPU runs collected into {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
