"""Plotly figures for the dashboard (``gr.Plot`` renders them).

Token figures follow the paper: the task affinity A (Sec. 3.1), fine-grained tokens' self-affinity
(cosine similarity) and a 2-D PCA of the fine tokens (Fig. 7). Metric figures compare run records
with the paper's tables; learning curves read the per-epoch logs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hitts_demo.records import RunRecord, as_percent, is_number
from hitts_schema import HIGHER_IS_BETTER, METHODS, is_lower_better, method_label

_GRID = dict(gridcolor="#e6e6e6", zerolinecolor="#c8c8c8", linecolor="#c8c8c8")
TEMPLATE = go.layout.Template(
    layout=dict(
        paper_bgcolor="white",
        plot_bgcolor="white",
        font=dict(family="sans-serif", size=12),
        xaxis=_GRID,
        yaxis=_GRID,
        colorway=[
            "#4c78a8",
            "#f58518",
            "#e45756",
            "#72b7b2",
            "#54a24b",
            "#eeca3b",
            "#b279a2",
            "#ff9da6",
            "#9d755d",
            "#bab0ac",
        ],
    )
)
"""A light white template: plotly's built-in ones cost 10-40 ms per figure to apply."""
FIG_HEIGHT = 380
SUBPLOT_COLUMNS = 4
METHOD_COLOURS = {
    "stl": "#8c8c8c",
    "mtl": "#4c78a8",
    "hitts": "#f58518",
    "hitts_pseudo": "#e45756",
    "paper": "#54a24b",
}
OURS_PREFIXES = ("Ours", "HiTTs")
OURS_COLOUR = "#f58518"
OTHERS_COLOUR = "#4c78a8"
PAPER_METHOD_ROWS = {
    # paper row (Table 5, NYUD-v2 one-label) -> our method key
    "STL": "stl",
    "MTL baseline": "mtl",
    "HiTTs": "hitts",
    "HiTTs w. L_p + L_f": "hitts_pseudo",
}
"""Rows of the paper's Table 5 that correspond to the methods of a run record."""


def _figure(*traces: go.BaseTraceType) -> go.Figure:
    """A figure with the light template (set at construction, so plotly's default is never applied)."""
    return go.Figure(data=list(traces), layout=dict(template=TEMPLATE))


def _subplots(rows: int, cols: int, **kwargs) -> go.Figure:
    return make_subplots(rows=rows, cols=cols, figure=_figure(), **kwargs)


def _layout(fig: go.Figure, title: str, height: int = FIG_HEIGHT) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=40, r=20, t=60, b=40))
    return fig


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = _figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14)
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", 220)


def affinity_figure(affinity: np.ndarray | None, tasks: Sequence[str]) -> go.Figure:
    """Heatmap of A (T x T): row i = how much task i's features take from task j."""
    if affinity is None:
        return empty_figure("This model exports no task affinity (MTL baseline or tokens off).")
    text = [[f"{v:.2f}" for v in row] for row in affinity]
    fig = _figure(
        go.Heatmap(
            z=affinity,
            x=list(tasks),
            y=list(tasks),
            zmin=0.0,
            zmax=1.0,
            colorscale="Viridis",
            text=text,
            texttemplate="%{text}",
            hovertemplate="task %{y} <- %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="task i (receives)", automargin=True)
    fig.update_xaxes(title="task j (gives)", automargin=True)
    return _layout(fig, "Task affinity A = softmax(QK^T) (rows sum to 1)")


def cosine_matrix(tokens: np.ndarray) -> np.ndarray:
    """(C, D) tokens -> (C, C) cosine similarities."""
    unit = tokens / np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def token_self_affinity_figure(tokens: dict[str, np.ndarray], labels: dict[str, list[str]]) -> go.Figure:
    """One cosine-similarity heatmap of the fine tokens per task (paper Fig. 7, left)."""
    if not tokens:
        return empty_figure("This model exports no fine-grained tokens.")
    names = list(tokens)
    fig = _subplots(1, len(names), subplot_titles=names, horizontal_spacing=0.06)
    for i, task in enumerate(names, start=1):
        sim = cosine_matrix(tokens[task])
        lab = labels.get(task) or [str(k) for k in range(len(sim))]
        fig.add_trace(
            go.Heatmap(
                z=sim,
                x=lab,
                y=lab,
                zmin=-1,
                zmax=1,
                colorscale="RdBu_r",
                showscale=i == len(names),
                hovertemplate="%{y} vs %{x}: %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=i,
        )
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=i)
        fig.update_xaxes(showticklabels=False, row=1, col=i)
    return _layout(fig, "Fine-grained tokens: self-affinity (cosine similarity)")


def pca_2d(points: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2) projections on the two leading principal components."""
    centred = points - points.mean(axis=0, keepdims=True)
    if len(points) < 2:
        return np.zeros((len(points), 2))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    proj = centred @ comps.T
    return np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))


def token_pca_figure(
    history: list[dict[str, np.ndarray]], labels: dict[str, list[str]], colours: dict[str, np.ndarray]
) -> go.Figure:
    """PCA of the fine tokens of the images analysed in this session (paper Fig. 7, right).

    Each point is one token (one class / bin / centre) of one image; colours are the classes'.
    """
    if not history or not history[-1]:
        return empty_figure("This model exports no fine-grained tokens.")
    names = list(history[-1])
    fig = _subplots(1, len(names), subplot_titles=names, horizontal_spacing=0.06)
    for i, task in enumerate(names, start=1):
        sets = [h[task] for h in history if task in h]
        stacked = np.concatenate(sets, axis=0)
        proj = pca_2d(stacked.astype(np.float64))
        n_cls = sets[0].shape[0]
        lab = labels.get(task) or [str(k) for k in range(n_cls)]
        cls = np.tile(np.arange(n_cls), len(sets))
        img = np.repeat(np.arange(len(sets)), n_cls)
        pal = colours.get(task)
        marker_colours = [f"rgb({r},{g},{b})" for r, g, b in pal[cls]] if pal is not None else cls
        latest = img == len(sets) - 1
        fig.add_trace(
            go.Scatter(
                x=proj[:, 0],
                y=proj[:, 1],
                mode="markers",
                marker=dict(
                    color=marker_colours,
                    size=np.where(latest, 10, 6),
                    line=dict(width=np.where(latest, 1, 0), color="black"),
                ),
                text=[f"{lab[c]} (image {k + 1})" for c, k in zip(cls, img)],
                hovertemplate="%{text}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=i,
        )
    n = len(history)
    return _layout(fig, f"Fine-grained tokens: PCA over {n} image(s) of this session (latest outlined)")


def accuracy_coverage_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    current: dict[str, tuple[float, float, float]],
) -> go.Figure:
    """Pseudo-label accuracy vs coverage as tau sweeps 0..1, per task; the current tau marked."""
    if not curves:
        return empty_figure("Pick a gallery item with ground truth to see accuracy against coverage.")
    fig = _figure()
    for task, (taus, acc, cov) in curves.items():
        fig.add_trace(
            go.Scatter(
                x=cov * 100,
                y=acc * 100,
                mode="lines",
                name=task,
                customdata=taus,
                hovertemplate=f"{task}: tau %{{customdata:.2f}}<br>coverage %{{x:.1f}}%<br>"
                "accuracy %{y:.1f}%<extra></extra>",
            )
        )
        if task in current:
            tau, acc_now, cov_now = current[task]
            fig.add_trace(
                go.Scatter(
                    x=[cov_now * 100],
                    y=[acc_now * 100],
                    mode="markers",
                    marker=dict(size=11, symbol="x"),
                    name=f"{task} at tau {tau:.2f}",
                    showlegend=True,
                )
            )
    fig.update_xaxes(title="coverage: pixels kept (%)", range=[0, 100])
    fig.update_yaxes(title="accuracy of kept pixels (%)", range=[0, 100])
    return _layout(fig, "Pseudo labels: accuracy vs coverage over tau (ground truth of the gallery item)")


def _metric_panels(runs: list[RunRecord]) -> list[tuple[str, str]]:
    """Every (task, metric) of the runs' methods (the reader keeps only declared metrics)."""
    panels: dict[tuple[str, str], None] = {}
    for run in runs:
        for block in run.metrics.values():
            for task, values in block.items():
                if isinstance(values, dict):
                    for metric in values:
                        panels[(task, metric)] = None
    return list(panels)


def _direction(metric: str) -> str:
    """From ``hitts_schema`` (Delta_MTL, not a metric, is higher-better)."""
    if metric not in HIGHER_IS_BETTER:
        return "(higher better)"
    return "(lower better)" if is_lower_better(metric) else "(higher better)"


def ordered_methods(names) -> list[str]:
    """Registered methods in the registry's order, then any unknown ones sorted."""
    names = set(names)
    return [m for m in METHODS if m in names] + sorted(names - set(METHODS))


def paper_reference(paper_tables: dict) -> dict[str, dict]:
    """Our method key -> metrics block of the paper's NYUD-v2 one-label Table 5 row."""
    rows = paper_tables.get("table5", {}).get("rows", [])
    return {PAPER_METHOD_ROWS[r["model"]]: r for r in rows if r["model"] in PAPER_METHOD_ROWS}


def runs_figure(runs: list[RunRecord], paper_tables: dict) -> go.Figure:
    """Every (task, metric) of the run records: bars per method, one group per run, plus the paper's
    NYUD-v2 one-label numbers (Table 5) where the metric exists there. Percent metrics in percent."""
    panels = _metric_panels(runs)
    if not panels:
        return empty_figure("No run records: put metrics.json files in exports/runs/<run>/.")
    paper = paper_reference(paper_tables)
    cols = min(SUBPLOT_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / cols)
    titles = [f"{t} {m} {_direction(m)}" for t, m in panels]
    fig = _subplots(rows, cols, subplot_titles=titles, vertical_spacing=0.5 / rows)
    methods = ordered_methods(m for r in runs for m in r.metrics)
    for k, (task, metric) in enumerate(panels):
        row, col = k // cols + 1, k % cols + 1
        for method in methods:
            xs, ys = [], []
            for run in runs:
                value = run.metrics.get(method, {}).get(task, {}).get(metric)
                if is_number(value):
                    xs.append(run.name)
                    ys.append(as_percent(metric, value))
            ref = paper.get(method, {}).get("metrics", {}).get(task, {}).get(metric)
            if is_number(ref):
                xs.append("paper (T5)")
                ys.append(ref)
            if xs:
                fig.add_trace(
                    go.Bar(
                        x=xs,
                        y=ys,
                        name=method_label(method),
                        legendgroup=method,
                        marker_color=METHOD_COLOURS.get(method),
                        showlegend=k == 0,
                    ),
                    row=row,
                    col=col,
                )
    fig.update_layout(barmode="group")
    return _layout(fig, "Runs vs the paper (NYUD-v2 one-label, Table 5)", max(FIG_HEIGHT, 260 * rows))


def delta_figure(deltas: dict[str, dict[str, float]], paper_tables: dict, title: str) -> go.Figure:
    """Delta_MTL (%) per method and run (``deltas``: run -> method -> value), with the paper's Table 5."""
    fig = _figure()
    paper = paper_reference(paper_tables)
    methods = ordered_methods({m for d in deltas.values() for m in d} | set(paper))
    for method in methods:
        xs, ys = [], []
        for run, values in deltas.items():
            if is_number(values.get(method)):
                xs.append(run)
                ys.append(values[method])
        ref = paper.get(method, {}).get("delta_mtl")
        if is_number(ref):
            xs.append("paper (T5)")
            ys.append(ref)
        if xs:
            fig.add_trace(
                go.Bar(x=xs, y=ys, name=method_label(method), marker_color=METHOD_COLOURS.get(method))
            )
    if not fig.data:
        return empty_figure("No Delta_MTL: the run records hold no STL reference and no stored value.")
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="Delta_MTL vs STL (%)")
    return _layout(fig, title)


def paper_table_figure(table: dict) -> go.Figure:
    """One of the paper's tables as grouped bars (one panel per metric column)."""
    rows = table.get("rows", [])
    if not rows:
        return empty_figure("Empty table.")
    src = table.get("source", {})
    title = f"Paper Table {src.get('table', '?')}: {src.get('caption', '')} (orange: HiTTs)"
    names = [r["model"] + (f" ({r['setting']})" if r.get("setting") else "") for r in rows]
    if "params_m" in rows[0]:
        cols = table.get("columns", [])
        fig = _subplots(1, len(cols), subplot_titles=[c["label"] for c in cols])
        colours = [OURS_COLOUR if r["model"].startswith(OURS_PREFIXES) else OTHERS_COLOUR for r in rows]
        for i, c in enumerate(cols, start=1):
            fig.add_trace(
                go.Bar(x=names, y=[r[c["key"]] for r in rows], showlegend=False, marker_color=colours),
                row=1,
                col=i,
            )
        return _layout(fig, title)
    columns = [(c["task"], c["metric"], c["higher_is_better"]) for c in table["columns"]]
    has_delta = any(is_number(r.get("delta_mtl")) for r in rows)
    panels = columns + ([("", "delta_mtl", True)] if has_delta else [])
    cols = min(SUBPLOT_COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / cols)
    titles = [f"{t} {m} {_direction(m)}".strip() for t, m, _ in panels]
    colours = [OURS_COLOUR if r["model"].startswith(OURS_PREFIXES) else OTHERS_COLOUR for r in rows]
    fig = _subplots(nrows, cols, subplot_titles=titles, vertical_spacing=0.6 / nrows)
    for k, (task, metric, _) in enumerate(panels):
        ys = [
            r.get("delta_mtl") if metric == "delta_mtl" else r["metrics"].get(task, {}).get(metric)
            for r in rows
        ]
        fig.add_trace(
            go.Bar(x=names, y=ys, showlegend=False, marker_color=colours), row=k // cols + 1, col=k % cols + 1
        )
    fig.update_xaxes(tickangle=45, tickfont=dict(size=9))
    return _layout(fig, title, max(FIG_HEIGHT, 300 * nrows))


def learning_curves_figure(runs: list[RunRecord], key: str | None) -> go.Figure:
    """``key`` against epoch for each run and split (train / val); lines missing the key are skipped."""
    if not key:
        return empty_figure("No learning curves: put log.jsonl files in exports/runs/<run>/.")
    fig = _figure()
    for run in runs:
        by_split: dict[str, list[tuple[float, float]]] = {}
        for i, line in enumerate(run.log):
            value = line.get(key)
            if not is_number(value):
                continue
            x = line.get("epoch", line.get("step", i))
            by_split.setdefault(str(line.get("split", "all")), []).append((x if is_number(x) else i, value))
        for split, pts in sorted(by_split.items()):
            pts.sort()
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in pts],
                    y=[p[1] for p in pts],
                    mode="lines+markers",
                    name=f"{run.name} / {split}",
                )
            )
    if not fig.data:
        return empty_figure(f"No log line has a numeric {key!r}.")
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title=key)
    return _layout(fig, f"Learning curves: {key}")


def fine_scores_figure(entries: dict[str, dict], colours: dict[str, np.ndarray], title: str) -> go.Figure:
    """One bar chart per task side by side: the fine-token score of every class / bin / centre at one
    pixel (``entries``: task -> {"fine_token_scores": [...], "labels": [...]}). The axes are laid out
    by hand (``make_subplots`` costs ~50 ms, too much for a click)."""
    if not entries:
        return empty_figure("This model exports no fine-grained tokens.")
    fig, n, gap = _figure(), len(entries), 0.06
    width = (1.0 - gap * (n - 1)) / n
    for i, (task, entry) in enumerate(entries.items()):
        scores, labels = entry["fine_token_scores"], entry["labels"]
        pal = colours.get(task)
        marker = [f"rgb({r},{g},{b})" for r, g, b in pal[: len(scores)]] if pal is not None else None
        suffix = "" if i == 0 else str(i + 1)
        fig.add_trace(
            go.Bar(
                x=[lab.split(":")[0] for lab in labels],
                y=scores,
                marker_color=marker,
                hovertext=labels,
                showlegend=False,
                xaxis=f"x{suffix}",
                yaxis=f"y{suffix}",
            )
        )
        lo = i * (width + gap)
        fig.layout[f"xaxis{suffix}"] = dict(
            domain=[lo, lo + width], anchor=f"y{suffix}", tickangle=60, tickfont=dict(size=8), **_GRID
        )
        fig.layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", **_GRID)
        fig.add_annotation(
            text=task, x=lo + width / 2, y=1.02, xref="paper", yref="paper", showarrow=False, yanchor="bottom"
        )
    return _layout(fig, title)
