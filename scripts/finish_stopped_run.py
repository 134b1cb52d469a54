"""Write ``metrics.json`` for a run whose training was stopped before its last epoch (a GPU call's
deadline): the validation figures of its last logged epoch (the checkpoint's weights) and the test
split evaluated now, once, with the same code as a finished run.

    python scripts/finish_stopped_run.py RUN [--data ROOT]

The record says how many of the scheduled epochs were trained (``epochs_done`` of ``epochs``) and
that it was stopped, so no table can mistake it for a finished run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.engine import read_log, resolve_device  # noqa: E402
from trainer.pipeline import evaluate_model, last_val_metrics  # noqa: E402
from trainer.runs import METRICS_NAME, dataset_for, load_run, read_json, task_specs, write_json  # noqa: E402

GPU_DEADLINE = "training stopped by the GPU call's deadline; weights of the last finished epoch"


def finish(run: Path, data: str | None, reason: str = GPU_DEADLINE) -> dict:
    if read_json(run / METRICS_NAME):
        raise SystemExit(f"{run} already has {METRICS_NAME}: it finished")
    cfg, model, quantisers, state = load_run(run)
    log = read_log(run)
    if state["epoch"] + 1 != len(log):
        raise SystemExit(f"{run}: checkpoint of epoch {state['epoch'] + 1} but {len(log)} logged epochs")
    specs = task_specs(cfg)
    test = dataset_for(cfg, data or state["data_root"], "val", specs)
    test_metrics = evaluate_model(model, test, specs, quantisers, resolve_device("cpu"))
    result = {
        "epochs": cfg.train.epochs,
        "epochs_done": len(log),
        "stopped": reason,
        "val_metrics": last_val_metrics(log),
        "test_metrics": test_metrics,
        "eval_split": cfg.data.eval_split,
        "test_evaluated_on": "cpu",
    }
    result["metrics"] = result[f"{cfg.data.eval_split}_metrics"]  # the headline split, as train_method's
    write_json(run / METRICS_NAME, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="data root (default: the checkpoint's)")
    p.add_argument("--reason", default=GPU_DEADLINE, help="why it stopped (recorded in metrics.json)")
    args = p.parse_args(argv)
    result = finish(args.run, args.data, args.reason)
    print(json.dumps({k: result[k] for k in ("epochs", "epochs_done", "test_metrics")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
