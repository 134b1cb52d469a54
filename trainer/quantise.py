"""Every task as pixel classification (paper, Appendix A.1): targets -> class indices, logits -> predictions.

A ``Quantiser`` per task turns a dense target into the per-pixel class index the cross-entropy part
of the task loss needs, and turns the task logits G' (B, C_p, H, W) back into a prediction:

* ``ClassQuantiser`` (segmentation, human parts, saliency, edges): identity; prediction = argmax.
* ``DepthBins``: C_p bin centres over [d_min, d_max], log-spaced by default (the paper, and the
  authors' code too: its function is named "linear" but spaces exp(linspace(log)); NYUD 0.67..10 m).
  ``spacing="linear"`` (true linspace) is kept as an option. Prediction = sum_k c_k softmax(G')_k, (B, 1, H, W).
* ``NormalCentres``: C_p unit vectors (spherical k-means on training normals, or a Fibonacci sphere);
  prediction = normalise(sum_k c_k softmax(G')_k), (B, 3, H, W).

Conventions (the rest of the package relies on them):

* index ``-1`` (``IGNORE_LABEL``) marks an invalid pixel everywhere: depth <= 0 or non-finite, a zero
  or non-finite normal, a class outside [0, C_p).
* ``index_to_value(-1)`` gives the missing value of the task (depth 0, zero normal, class -1), so a
  pseudo-label index of -1 stays invalid after the round trip.
* ``to_index`` squeezes the channel axis (-3) of depth / normal targets: (B, 1|3, H, W) -> (B, H, W),
  and also works unbatched: (1|3, H, W) -> (H, W).
* Quantisers are tiny and JSON-able (``to_dict`` / ``from_dict``); the centres are saved with the run
  and the export manifest (``bin_centres`` / ``normal_centres``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from trainer.tasks import IGNORE_LABEL, MISSING_DEPTH, TaskSpec

DEPTH_LOW_PERCENTILE = 0.5
DEPTH_HIGH_PERCENTILE = 99.5
"""Percentiles of the valid training depths that become the first and last bin centres."""

DEPTH_FIT_MAX_SAMPLES = 1_000_000
"""Depth values kept (uniform random reservoir) to estimate the percentiles."""

NORMAL_FIT_MAX_SAMPLES = 200_000
"""Normal vectors kept (uniform random reservoir) for k-means."""

KMEANS_MAX_ITER = 100
NORM_EPS = 1e-12
"""Floor of a vector norm before dividing by it (keeps zero vectors finite, and their gradients)."""

SPACINGS = ("log", "linear")


def _as_tensor(x: Any) -> torch.Tensor:
    """A torch view of a numpy array or tensor, detached, on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.as_tensor(np.asarray(x))


class _Reservoir:
    """Uniform random sample without replacement of at most ``capacity`` rows of a stream.

    Each incoming row gets a uniform random key (from a seeded generator); the rows with the
    ``capacity`` smallest keys are kept. Streaming, bounded memory, deterministic by seed.
    """

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.keys = torch.empty(0)
        self.rows: torch.Tensor | None = None

    def add(self, rows: torch.Tensor) -> None:
        """Add ``rows`` (N, ...) to the stream."""
        if rows.shape[0] == 0:
            return
        keys = torch.rand(rows.shape[0], generator=self.generator)
        all_keys = torch.cat([self.keys, keys])
        all_rows = rows if self.rows is None else torch.cat([self.rows, rows])
        if all_keys.numel() > self.capacity:
            all_keys, keep = torch.topk(all_keys, self.capacity, largest=False, sorted=False)
            all_rows = all_rows[keep]
        self.keys, self.rows = all_keys, all_rows

    def sample(self) -> torch.Tensor:
        if self.rows is None:
            raise ValueError("no valid training values to fit a quantiser on")
        return self.rows


def _valid_depths(array: Any) -> torch.Tensor:
    """Flat float64 tensor of the valid depths (finite and > 0) of an array of any shape."""
    d = _as_tensor(array).to(torch.float64).reshape(-1)
    return d[torch.isfinite(d) & (d > MISSING_DEPTH)]


def _valid_normals(array: Any) -> torch.Tensor:
    """(N, 3) float64 unit vectors of the valid normals of an array.

    Accepted layouts: (N, 3), or a channel axis of size 3 at -3: (3, H, W) / (B, 3, H, W).
    Zero and non-finite vectors are dropped; the rest are normalised.
    """
    n = _as_tensor(array).to(torch.float64)
    if n.ndim == 2 and n.shape[1] == 3:
        rows = n
    elif n.ndim >= 3 and n.shape[-3] == 3:
        rows = n.movedim(-3, -1).reshape(-1, 3)
    else:
        raise ValueError(f"normal array must be (N, 3), (3, H, W) or (B, 3, H, W); got {tuple(n.shape)}")
    norm = rows.norm(dim=1)
    ok = torch.isfinite(rows).all(dim=1) & (norm > 0)
    return rows[ok] / norm[ok, None]


class Quantiser:
    """Base class: maps targets to pixel classes and logits to predictions (see module docstring).

    Subclasses set ``num_classes`` (C_p) and ``ignore_value`` (the target value of a pixel without
    a label: -1 for classes, 0 for depth and normals) and implement the methods below.
    """

    num_classes: int
    ignore_value: float | int
    type_name: str = ""

    def to_index(self, target: torch.Tensor) -> torch.Tensor:
        """Target -> (B, H, W) int64 class index, -1 where invalid. Never mutates ``target``."""
        raise NotImplementedError

    def decode_probabilities(self, probabilities: torch.Tensor) -> torch.Tensor:
        """softmax(G') (B, C_p, H, W) -> prediction (see ``decode``)."""
        raise NotImplementedError

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits G' (B, C_p, H, W) -> prediction: (B, H, W) int64 class, (B, 1, H, W) depth or
        (B, 3, H, W) unit normals. Differentiable for depth and normals."""
        return self.decode_probabilities(torch.softmax(logits, dim=1))

    def index_to_value(self, index: torch.Tensor) -> torch.Tensor:
        """(B, H, W) index -> target-like value (class (B, H, W), depth (B, 1, H, W), normals
        (B, 3, H, W)): the bin / cluster centre; ``ignore_value`` where index is -1."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Quantiser:
        """Rebuild any quantiser from ``to_dict()`` output (dispatches on ``d["type"]``)."""
        types = {q.type_name: q for q in (ClassQuantiser, DepthBins, NormalCentres)}
        kind = d.get("type")
        if kind not in types:
            raise ValueError(f"unknown quantiser type {kind!r}; valid: {sorted(types)}")
        return types[kind]._from_dict(d)

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> Quantiser:
        raise NotImplementedError

    def _on(self, name: str, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The tensor attribute ``name`` on ``like``'s device (in ``dtype``, default its own). Copies to
        another device are made once and kept: a blocking host-to-GPU copy in every loss call would
        make the host wait for the GPU at every training step."""
        source = getattr(self, name)
        dtype = dtype or source.dtype
        if like.device.type == "cpu":
            return source.to(dtype)
        cache = self.__dict__.setdefault("_device_copies", {})
        key = (name, like.device, dtype)
        kept = cache.get(key)
        if kept is None or kept[0] is not source:  # (re)made when the attribute was replaced
            kept = cache[key] = (source, source.to(like.device, dtype))
        return kept[1]

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (data-loader workers, deep copies) leave the device copies behind."""
        return {k: v for k, v in self.__dict__.items() if k != "_device_copies"}


class ClassQuantiser(Quantiser):
    """Classification tasks: the target already is the class index. Prediction = argmax (int64)."""

    type_name = "classes"
    ignore_value = IGNORE_LABEL

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)

    def to_index(self, target: torch.Tensor) -> torch.Tensor:
        """(B, H, W) int -> (B, H, W) int64; classes outside [0, C_p) (e.g. 255) become -1."""
        target = target.long()
        valid = (target >= 0) & (target < self.num_classes)
        return torch.where(valid, target, torch.full_like(target, IGNORE_LABEL))

    def decode_probabilities(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities.argmax(dim=1)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=1)

    def index_to_value(self, index: torch.Tensor) -> torch.Tensor:
        return self.to_index(index)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "num_classes": self.num_classes}

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> ClassQuantiser:
        return cls(int(d["num_classes"]))

    def __repr__(self) -> str:
        return f"ClassQuantiser(num_classes={self.num_classes})"


class DepthBins(Quantiser):
    """C_p depth bin centres from ``d_min`` to ``d_max`` (both are centres, the first and the last).

    spacing: "log" (default; the paper's "logarithmic bins" and the authors' code, whose helper is
        named "linear" but spaces the centres by exp(linspace(log d_min, log d_max))) or "linear"
        (true ``linspace``, an option of this project).
    to_index: nearest centre measured in the spacing's own space (log-depth for "log"); depths
        outside the range go to the end bins; -1 where depth <= 0 or non-finite.
    decode: sum_k c_k softmax(G')_k, (B, 1, H, W), in the unit of the targets (metres; Cityscapes:
        disparity).
    """

    type_name = "depth_bins"
    ignore_value = MISSING_DEPTH

    def __init__(self, d_min: float, d_max: float, num_bins: int, spacing: str = "log") -> None:
        if spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
        if not (0 < d_min < d_max) or not math.isfinite(d_max):
            raise ValueError(f"need 0 < d_min < d_max < inf, got d_min={d_min}, d_max={d_max}")
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.d_min, self.d_max = float(d_min), float(d_max)
        self.num_classes = int(num_bins)
        self.spacing = spacing
        lo, hi = self._forward(torch.tensor([self.d_min, self.d_max], dtype=torch.float64)).tolist()
        grid = torch.linspace(lo, hi, self.num_classes, dtype=torch.float64)  # in the spacing's space
        self._grid = grid
        self._boundaries = (grid[1:] + grid[:-1]) / 2  # (K-1,) nearest-centre decision boundaries
        self.centres = self._inverse(grid).to(torch.float32)  # (K,) in target units

    @property
    def num_bins(self) -> int:
        return self.num_classes

    def _forward(self, depth: torch.Tensor) -> torch.Tensor:
        return depth.log() if self.spacing == "log" else depth

    def _inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value.exp() if self.spacing == "log" else value

    @classmethod
    def fit(
        cls,
        depth_arrays: Iterable[Any],
        num_bins: int,
        low_pct: float = DEPTH_LOW_PERCENTILE,
        high_pct: float = DEPTH_HIGH_PERCENTILE,
        spacing: str = "log",
        max_samples: int = DEPTH_FIT_MAX_SAMPLES,
        seed: int = 0,
    ) -> DepthBins:
        """Bins whose end centres are the ``low_pct`` / ``high_pct`` percentiles of the valid
        (finite, > 0) training depths, so outliers do not stretch the range.

        depth_arrays: arrays / tensors of any shape (e.g. (1, H, W) per sample). Percentiles are
        taken over a uniform random sample of at most ``max_samples`` valid values (seeded).
        """
        reservoir = _Reservoir(max_samples, seed)
        for array in depth_arrays:
            reservoir.add(_valid_depths(array))
        return cls.from_values(reservoir.sample(), num_bins, low_pct, high_pct, spacing)

    @classmethod
    def from_values(
        cls,
        values: torch.Tensor,
        num_bins: int,
        low_pct: float = DEPTH_LOW_PERCENTILE,
        high_pct: float = DEPTH_HIGH_PERCENTILE,
        spacing: str = "log",
    ) -> DepthBins:
        """Bins from a flat tensor of valid depths (see ``fit``)."""
        values = values.to(torch.float64)
        q = torch.tensor([low_pct / 100.0, high_pct / 100.0], dtype=torch.float64)
        d_min, d_max = torch.quantile(values, q).tolist()
        if not d_max > d_min:
            raise ValueError(f"degenerate depth range [{d_min}, {d_max}]: need more varied training depths")
        return cls(d_min, d_max, num_bins, spacing)

    def to_index(self, target: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) depth -> (B, H, W) int64 bin of the nearest centre; -1 where invalid."""
        if target.shape[-3] != 1:
            raise ValueError(f"depth target must have one channel at dim -3, got {tuple(target.shape)}")
        depth = target.squeeze(-3).to(torch.float64)
        valid = torch.isfinite(depth) & (depth > MISSING_DEPTH)
        safe = torch.where(valid, depth, torch.full_like(depth, self.d_min))
        index = torch.bucketize(self._forward(safe), self._on("_boundaries", safe))
        return torch.where(valid, index, torch.full_like(index, IGNORE_LABEL))

    def decode_probabilities(self, probabilities: torch.Tensor) -> torch.Tensor:
        centres = self._on("centres", probabilities, probabilities.dtype).view(1, -1, 1, 1)  # (1, K, 1, 1)
        return (probabilities * centres).sum(dim=1, keepdim=True)  # (B, 1, H, W)

    def index_to_value(self, index: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bin index -> (B, 1, H, W) centre depth; 0 (missing) where index is -1."""
        centres = self._on("centres", index)
        valid = (index >= 0) & (index < self.num_classes)
        value = centres[torch.where(valid, index, torch.zeros_like(index))]
        return torch.where(valid, value, torch.zeros_like(value)).unsqueeze(-3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "d_min": self.d_min,
            "d_max": self.d_max,
            "num_bins": self.num_classes,
            "spacing": self.spacing,
            "centres": [float(c) for c in self.centres],  # informative; rebuilt from the fields
        }

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> DepthBins:
        return cls(float(d["d_min"]), float(d["d_max"]), int(d["num_bins"]), str(d.get("spacing", "log")))

    def __repr__(self) -> str:
        return (
            f"DepthBins(d_min={self.d_min:.4g}, d_max={self.d_max:.4g}, num_bins={self.num_classes}, "
            f"spacing={self.spacing!r})"
        )


class NormalCentres(Quantiser):
    """C_p unit normal vectors (K, 3).

    to_index: the centre of largest cosine similarity; -1 where the target is the zero vector or
        non-finite.
    decode: normalise(sum_k c_k softmax(G')_k), (B, 3, H, W) unit vectors.
    """

    type_name = "normal_centres"
    ignore_value = 0.0

    def __init__(self, centres: Any) -> None:
        c = _as_tensor(centres).to(torch.float64)
        if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] < 2:
            raise ValueError(f"centres must be (K >= 2, 3), got {tuple(c.shape)}")
        norm = c.norm(dim=1, keepdim=True)
        if not torch.isfinite(c).all() or (norm == 0).any():
            raise ValueError("normal centres must be finite and non-zero")
        self.centres = (c / norm).to(torch.float32)  # (K, 3) unit vectors
        self.num_classes = int(c.shape[0])

    @classmethod
    def uniform(cls, num: int) -> NormalCentres:
        """``num`` directions spread uniformly over the whole sphere (Fibonacci lattice).

        Used for PASCAL-Context's 40 centres ("selected uniformly from the space"). Point i has
        z = 1 - 2 (i + 0.5) / num and azimuth i * golden angle.
        """
        i = torch.arange(num, dtype=torch.float64)
        z = 1.0 - 2.0 * (i + 0.5) / num
        r = torch.sqrt(1.0 - z * z)
        golden_angle = math.pi * (3.0 - math.sqrt(5.0))
        phi = i * golden_angle
        return cls(torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=1))

    @classmethod
    def fit(
        cls,
        normal_arrays: Iterable[Any],
        num_centres: int,
        seed: int = 0,
        max_samples: int = NORMAL_FIT_MAX_SAMPLES,
        max_iter: int = KMEANS_MAX_ITER,
    ) -> NormalCentres:
        """Spherical k-means on the valid training normals.

        normal_arrays: (3, H, W), (B, 3, H, W) or (N, 3) arrays / tensors. A uniform random sample
        of at most ``max_samples`` valid vectors (seeded reservoir) is clustered.
        """
        reservoir = _Reservoir(max_samples, seed)
        for array in normal_arrays:
            reservoir.add(_valid_normals(array))
        return cls.from_vectors(reservoir.sample(), num_centres, seed, max_iter)

    @classmethod
    def from_vectors(
        cls, vectors: torch.Tensor, num_centres: int, seed: int = 0, max_iter: int = KMEANS_MAX_ITER
    ) -> NormalCentres:
        """Spherical k-means of (N, 3) unit vectors.

        Similarity = cosine; k-means++ initialisation with distance 1 - cos (seeded); assignment
        = argmax cosine; update = normalised sum of the members; an empty cluster is re-seeded
        with the point worst served by its centre. Stops when assignments stop changing or after
        ``max_iter`` rounds. Deterministic for a given seed.
        """
        x = vectors.to(torch.float64)
        x = x / x.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
        n = x.shape[0]
        if n < num_centres:
            raise ValueError(f"need at least {num_centres} valid normals for k-means, got {n}")
        g = torch.Generator().manual_seed(seed)
        # k-means++: each new centre drawn with probability proportional to (1 - max cos)
        centres = [x[torch.randint(n, (1,), generator=g).item()]]
        dist = 1.0 - x @ centres[0]
        for _ in range(1, num_centres):
            weights = dist.clamp_min(0)
            if weights.sum() <= 0:  # fewer distinct directions than centres: pick uniformly
                weights = torch.ones_like(weights)
            pick = torch.multinomial(weights, 1, generator=g).item()
            centres.append(x[pick])
            dist = torch.minimum(dist, 1.0 - x @ x[pick])
        c = torch.stack(centres)  # (K, 3)
        assign = None
        for _ in range(max_iter):
            cos = x @ c.T  # (N, K)
            best, new_assign = cos.max(dim=1)
            if assign is not None and torch.equal(new_assign, assign):
                break
            assign = new_assign
            sums = torch.zeros_like(c).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=num_centres)
            for k in torch.nonzero(counts == 0).flatten().tolist():  # re-seed empty clusters
                worst = torch.argmin(best).item()
                sums[k] = x[worst]
                best[worst] = 2.0  # not chosen twice
            c = sums / sums.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
        return cls(c)

    def to_index(self, target: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normals -> (B, H, W) int64 centre of largest cosine; -1 where invalid."""
        if target.shape[-3] != 3:
            raise ValueError(f"normal target must have 3 channels at dim -3, got {tuple(target.shape)}")
        finite = torch.isfinite(target).all(dim=-3)
        safe = torch.where(torch.isfinite(target), target, torch.zeros_like(target)).float()
        valid = finite & (safe.abs().sum(dim=-3) > 0)
        cos = torch.einsum("kc,...chw->...khw", self._on("centres", safe), safe)  # (B, K, H, W)
        index = cos.argmax(dim=-3)
        return torch.where(valid, index, torch.full_like(index, IGNORE_LABEL))

    def decode_probabilities(self, probabilities: torch.Tensor) -> torch.Tensor:
        centres = self._on("centres", probabilities, probabilities.dtype)
        v = torch.nn.functional.conv2d(probabilities, centres.t()[:, :, None, None])  # (B, 3, H, W)
        norm = torch.sqrt((v * v).sum(dim=1, keepdim=True)).clamp_min(NORM_EPS)
        return v / norm

    def index_to_value(self, index: torch.Tensor) -> torch.Tensor:
        """(B, H, W) centre index -> (B, 3, H, W) centre vector; zero vector where index is -1."""
        centres = self._on("centres", index)
        valid = (index >= 0) & (index < self.num_classes)
        value = centres[torch.where(valid, index, torch.zeros_like(index))]  # (B, H, W, 3)
        value = torch.where(valid.unsqueeze(-1), value, torch.zeros_like(value))
        return value.movedim(-1, -3)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "centres": [[float(v) for v in row] for row in self.centres]}

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> NormalCentres:
        return cls(torch.tensor(d["centres"], dtype=torch.float64))

    def __repr__(self) -> str:
        return f"NormalCentres(num_centres={self.num_classes})"


NORMAL_METHODS = ("kmeans", "uniform")


def build_quantisers(
    specs: Iterable[TaskSpec],
    train_targets: Iterable[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]] | None = None,
    *,
    seed: int = 0,
    depth_spacing: str = "log",
    normal_method: str = "kmeans",
    low_pct: float = DEPTH_LOW_PERCENTILE,
    high_pct: float = DEPTH_HIGH_PERCENTILE,
    depth_max_samples: int = DEPTH_FIT_MAX_SAMPLES,
    normal_max_samples: int = NORMAL_FIT_MAX_SAMPLES,
) -> dict[str, Quantiser]:
    """One quantiser per task, fitted in a single pass over the training targets.

    specs: the tasks; the result is keyed by ``spec.name`` in the same order, with
        ``num_classes == spec.num_outputs``.
    train_targets: an iterable of mappings (sample dicts, or ``{task: target}`` dicts), a map-style
        dataset (indexed 0..len-1) or a callable returning one; only the depth / normal entries are read, with the sample layouts
        ((1, H, W) depth, (3, H, W) normals; batched layouts work too). Pass un-augmented training
        targets. Entries of unlabelled tasks are ignore-filled (0 / zero vector) and thus skipped.
        May be None when no task needs data (only classification tasks, normals "uniform").
    normal_method: "kmeans" (NYUD-v2: fitted on the training normals) or "uniform" (PASCAL-Context:
        ``NormalCentres.uniform``).
    """
    specs = tuple(specs)
    if normal_method not in NORMAL_METHODS:
        raise ValueError(f"normal_method must be one of {NORMAL_METHODS}, got {normal_method!r}")
    reservoirs: dict[str, _Reservoir] = {}
    extractors: dict[str, Callable[[Any], torch.Tensor]] = {}
    for s in specs:
        if s.kind == "depth":
            reservoirs[s.name], extractors[s.name] = _Reservoir(depth_max_samples, seed), _valid_depths
        elif s.kind == "normals" and normal_method == "kmeans":
            reservoirs[s.name], extractors[s.name] = _Reservoir(normal_max_samples, seed), _valid_normals
    if reservoirs:
        if train_targets is None:
            raise ValueError(f"tasks {sorted(reservoirs)} need training targets to fit their quantisers")
        for sample in _iterate(train_targets() if callable(train_targets) else train_targets):
            for name, reservoir in reservoirs.items():
                if name in sample:
                    reservoir.add(extractors[name](sample[name]))
    out: dict[str, Quantiser] = {}
    for s in specs:
        if s.is_classification:
            out[s.name] = ClassQuantiser(s.num_outputs)
        elif s.kind == "depth":
            out[s.name] = DepthBins.from_values(
                reservoirs[s.name].sample(), s.num_outputs, low_pct, high_pct, depth_spacing
            )
        elif normal_method == "uniform":
            out[s.name] = NormalCentres.uniform(s.num_outputs)
        else:
            out[s.name] = NormalCentres.from_vectors(reservoirs[s.name].sample(), s.num_outputs, seed)
    return out


def _iterate(samples: Any) -> Iterable[Mapping[str, Any]]:
    """Iterate a sequence, a map-style dataset (``__len__`` + ``__getitem__``) or any iterable."""
    if hasattr(samples, "__len__") and hasattr(samples, "__getitem__") and not isinstance(samples, Mapping):
        return (samples[i] for i in range(len(samples)))
    return samples


_QUANTISER_FOR_KIND = {
    "segmentation": ClassQuantiser,
    "binary": ClassQuantiser,
    "depth": DepthBins,
    "normals": NormalCentres,
}


def quantisers_to_dict(quantisers: Mapping[str, Quantiser]) -> dict[str, dict[str, Any]]:
    """``{task: quantiser.to_dict()}``, JSON-able."""
    return {name: q.to_dict() for name, q in quantisers.items()}


def quantisers_from_dict(
    d: Mapping[str, Mapping[str, Any]], specs: Iterable[TaskSpec]
) -> dict[str, Quantiser]:
    """Rebuild the quantisers of ``specs`` (in their order) from ``quantisers_to_dict`` output,
    checking that each matches its task's kind and ``num_outputs``."""
    out: dict[str, Quantiser] = {}
    for s in specs:
        if s.name not in d:
            raise KeyError(f"no saved quantiser for task {s.name!r}; saved: {sorted(d)}")
        q = Quantiser.from_dict(d[s.name])
        expected = _QUANTISER_FOR_KIND[s.kind]
        if not isinstance(q, expected):
            raise ValueError(
                f"task {s.name!r} ({s.kind}) needs a {expected.__name__}, got {type(q).__name__}"
            )
        if q.num_classes != s.num_outputs:
            raise ValueError(
                f"task {s.name!r}: saved quantiser has {q.num_classes} classes, spec has {s.num_outputs}"
            )
        out[s.name] = q
    return out


def logits_to_outputs(spec: TaskSpec, logits: torch.Tensor, quantiser: Quantiser) -> dict[str, torch.Tensor]:
    """Task logits G' (B, C_p, H, W) -> what evaluation, discovery and the ONNX export read.

    Returns ``pred`` (classification (B, H, W) int64; depth (B, 1, H, W); normals (B, 3, H, W)
    unit), ``confidence`` (B, H, W) max softmax (compared with tau for the pseudo-label mask) and
    ``label`` (B, H, W) int64 argmax of G' (the pseudo label). Plain torch ops only (ONNX-exportable);
    ``logits`` is not modified. For a 2-class task the foreground probability is recoverable as
    ``where(label == 1, confidence, 1 - confidence)``.
    """
    if not torch.jit.is_tracing() and logits.shape[1] != spec.num_outputs:
        raise ValueError(
            f"task {spec.name!r}: logits have {logits.shape[1]} channels, expected {spec.num_outputs}"
        )
    # softmax over channels written out: the same maths, but ONNX Runtime's CPU Softmax on axis 1 of
    # an NCHW tensor transposes it twice and was ~60% of the dashboard's inference time
    shifted = torch.exp(logits - logits.amax(dim=1, keepdim=True))  # (B, C_p, H, W), max entry 1
    total = shifted.sum(dim=1)  # (B, H, W)
    confidence = 1.0 / total  # max softmax = exp(max - max) / sum, without a second reduction
    label = logits.argmax(dim=1)
    if spec.is_classification:
        pred = label
    else:
        pred = quantiser.decode_probabilities(shifted / total.unsqueeze(1))
    return {"pred": pred, "confidence": confidence, "label": label}


__all__ = [
    "ClassQuantiser",
    "DepthBins",
    "NormalCentres",
    "Quantiser",
    "build_quantisers",
    "logits_to_outputs",
    "quantisers_from_dict",
    "quantisers_to_dict",
]
