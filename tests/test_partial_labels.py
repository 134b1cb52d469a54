"""Partial-label masks: settings, seeding and the JSON file every method shares."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.data.partial_labels import load_label_mask, make_label_mask, save_label_mask

TASKS = ["semseg", "depth", "normals"]
N = 50


def test_one_label_exactly_one_task_per_image_balanced():
    mask = make_label_mask(N, TASKS, "one-label", seed=0)
    assert mask.shape == (N, len(TASKS)) and mask.dtype == bool
    assert (mask.sum(1) == 1).all()
    counts = mask.sum(0)
    assert counts.max() - counts.min() <= 1  # 50 images over 3 tasks: 17, 17, 16


def test_random_labels_between_one_and_t_minus_one():
    mask = make_label_mask(N, TASKS, "random-labels", seed=0)
    per_image = mask.sum(1)
    assert per_image.min() >= 1 and per_image.max() <= len(TASKS) - 1
    assert set(per_image.tolist()) == {1, 2}  # both counts occur on 50 images
    assert mask.any(0).all()


def test_random_labels_with_two_tasks_is_one_label():
    mask = make_label_mask(N, ["semseg", "depth"], "random-labels", seed=1)
    assert (mask.sum(1) == 1).all()


def test_full_labels():
    assert make_label_mask(N, TASKS, "full-labels", seed=0).all()


@pytest.mark.parametrize(("task", "column"), [(None, 0), ("depth", 1)])
def test_few_shot_labels_k_images_of_one_task(task, column):
    mask = make_label_mask(N, TASKS, "few-shot", seed=0, few_shot_k=10, few_shot_task=task)
    assert mask[:, column].sum() == 10
    others = [t for t in range(len(TASKS)) if t != column]
    assert mask[:, others].all()


@pytest.mark.parametrize("setting", ["one-label", "random-labels", "few-shot"])
def test_same_seed_same_mask(setting):
    a = make_label_mask(N, TASKS, setting, seed=3)
    np.testing.assert_array_equal(a, make_label_mask(N, TASKS, setting, seed=3))
    assert not np.array_equal(a, make_label_mask(N, TASKS, setting, seed=4))


def test_save_load_round_trip(tmp_path):
    mask = make_label_mask(N, TASKS, "random-labels", seed=0)
    path = tmp_path / "split" / "split.json"
    save_label_mask(path, mask, TASKS, "random-labels", 0, {"dataset": "synthetic"})
    doc = json.loads(path.read_text())
    assert doc["setting"] == "random-labels" and doc["seed"] == 0 and doc["tasks"] == TASKS
    assert doc["num_images"] == N and doc["meta"] == {"dataset": "synthetic"}
    assert doc["images"]["0"] == [t for t, on in zip(TASKS, mask[0]) if on]
    np.testing.assert_array_equal(load_label_mask(path, TASKS), mask)
    np.testing.assert_array_equal(load_label_mask(path, TASKS, num_images=N), mask)
    # columns follow the order asked for
    np.testing.assert_array_equal(load_label_mask(path, TASKS[::-1]), mask[:, ::-1])


def test_load_fails_clearly_on_mismatch(tmp_path):
    path = tmp_path / "split.json"
    save_label_mask(path, make_label_mask(N, TASKS, "one-label", 0), TASKS, "one-label", 0)
    with pytest.raises(ValueError, match="tasks"):
        load_label_mask(path, ["semseg", "depth"])
    with pytest.raises(ValueError, match="covers 50 images"):
        load_label_mask(path, TASKS, num_images=N + 1)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_label_mask(tmp_path / "bad.json", TASKS)
    doc = json.loads(path.read_text())
    doc["images"]["0"] = ["edge"]
    (tmp_path / "unknown.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="unknown task"):
        load_label_mask(tmp_path / "unknown.json", TASKS)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((N, TASKS, "half-labels", 0), {}),
        ((N, ["semseg"], "random-labels", 0), {}),
        ((N, TASKS, "few-shot", 0), {"few_shot_k": N + 1}),
        ((N, TASKS, "few-shot", 0), {"few_shot_task": "edge"}),
        ((0, TASKS, "one-label", 0), {}),
    ],
)
def test_invalid_requests(args, kwargs):
    with pytest.raises(ValueError):
        make_label_mask(*args, **kwargs)
