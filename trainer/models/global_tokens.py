"""Global task tokens (paper Sec. 3.1 and Appendix A.2).

Task features are kept stacked on the channel axis, ``(B, T*C, h, w)`` (task t on channels
[t*C, (t+1)*C)), so that per-task work runs as one batched op.

One exact rewrite is used throughout: every task feature is the shared feature times a per-pixel
gate, ``F_j = F_s * g_j`` with ``g_j = sigmoid(<F_s, theta_j>)``, so the inter-task mixing
``F'_i = sum_j A_ij F_j`` equals ``F_s * (sum_j A_ij g_j)``: the affinity mixes the (B, T, h, w)
gates, and the (B, T, C, h, w) features are formed once, after mixing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .heads import TaskConv, TaskConvBNReLU, TaskLinear, init_layers, resize_to


def task_affinity(tokens: torch.Tensor, q: nn.Linear, k: nn.Linear) -> torch.Tensor:
    """A = softmax(Q K^T / sqrt(C)) for tokens (T, C); returns (T, T), rows sum to 1."""
    scores = q(tokens) @ k(tokens).T / tokens.shape[-1] ** 0.5
    return scores.softmax(dim=-1)


def mixed_gates(
    shared: torch.Tensor,
    tokens: torch.Tensor,
    affinity: torch.Tensor | None,
    channel_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Task-feature query and inter-task mixing of the gates (see ``gated_task_features``).

    Returns the mixed gates sum_j A_ij g_j (B, T, h, w) and the gates g (B, T, h, w).
    """
    t, c = tokens.shape
    query = tokens if channel_scale is None else tokens * channel_scale
    gates = torch.sigmoid(F.conv2d(shared, query.reshape(t, c, 1, 1)))  # (B, T, h, w)
    mixed = gates if affinity is None else F.conv2d(gates, affinity.view(t, t, 1, 1))  # sum_j A_ij g_j
    return mixed, gates


def gate_features(shared: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """The task features F_s * m_t, tasks stacked: shared (B, C, h, w), mixed (B, T, h, w) ->
    (B, T*C, h, w)."""
    b, c, h, w = shared.shape
    return (shared.unsqueeze(1) * mixed.unsqueeze(2)).view(b, mixed.shape[1] * c, h, w)


def gated_task_features(
    shared: torch.Tensor,
    tokens: torch.Tensor,
    affinity: torch.Tensor | None,
    channel_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Task-feature query and inter-task mixing of the features.

    shared (B, C, h, w), tokens (T, C), affinity (T, T) or None (identity), channel_scale (C,) or None:
    the authors' learned per-channel scale s before the gate, g = sigmoid(<s * F_s, theta>), computed
    exactly as <F_s, s * theta>.
    Returns the mixed task features (B, T*C, h, w) = F_s * sum_j A_ij g_j, and the gates (B, T, h, w).
    """
    mixed, gates = mixed_gates(shared, tokens, affinity, channel_scale)
    return gate_features(shared, mixed), gates


def _tracing() -> bool:
    """Under torch.compile or torch.export: plain ops only (the graph's partitioner decides what backward keeps)."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.compiler.is_compiling() or exporting()


def apply_recomputed(
    layer: Callable[[torch.Tensor], torch.Tensor], make: Callable[..., torch.Tensor], *inputs: Any
) -> torch.Tensor:
    """``layer(make(*inputs))``, the same values, without keeping ``make``'s output for backward: where
    ``layer`` saves it (a convolution saves its input), it is recomputed from ``inputs`` when the
    backward pass needs it. For a ``make`` that is cheap (elementwise, a resampling) and whose inputs
    are kept anyway. Eager training only; under ``torch.compile`` the partitioner makes that choice."""
    x = make(*inputs)
    if not (torch.is_grad_enabled() and x.requires_grad) or _tracing():
        return layer(x)
    key = (x.data_ptr(), x.shape, x.stride(), x.dtype)

    def pack(saved: torch.Tensor) -> torch.Tensor | tuple:
        same = (saved.data_ptr(), saved.shape, saved.stride(), saved.dtype) == key
        return inputs if same else saved

    def unpack(packed: torch.Tensor | tuple) -> torch.Tensor:
        return make(*packed) if isinstance(packed, tuple) else packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return layer(x)


def apply_to_gated(
    layer: Callable[[torch.Tensor], torch.Tensor], shared: torch.Tensor, mixed: torch.Tensor
) -> torch.Tensor:
    """``layer(gate_features(shared, mixed))`` without keeping the T-times-wider product
    (B, T*C, h, w) for backward: it is recomputed from F_s and m (``apply_recomputed``)."""
    return apply_recomputed(layer, gate_features, shared, mixed)


def add_resized(x: torch.Tensor, small: torch.Tensor, padded: tuple[int, int]) -> torch.Tensor:
    """x (B, C, h, w) + ``small`` resampled (bilinear) to the ``padded`` grid and cropped to (h, w)."""
    h, w = x.shape[-2:]
    return x + resize_to(small, padded)[..., :h, :w]


def make_tokens(num_tasks: int, channels: int, init_std: float, trainable: bool) -> torch.Tensor:
    """theta (T, C) ~ N(0, init_std^2): a Parameter, or (``trainable`` False, as in the authors' code,
    where the tokens are never registered and stay at their init) a plain tensor to be kept as a buffer."""
    theta = torch.randn(num_tasks, channels) * init_std
    return nn.Parameter(theta) if trainable else theta


def gate_scale_init(channels: int) -> nn.Parameter:
    """The authors' per-channel scale before the gate: a depthwise 1x1 conv weight (C, 1, 1, 1) with
    Xavier-normal init, std = sqrt(2 / (1 + C)), held as (C,)."""
    return nn.Parameter(torch.randn(channels) * (2.0 / (1 + channels)) ** 0.5)


class GlobalTokens(nn.Module):
    """Single-scale global task token learning: tokens theta (T, C) query F_s, then inter-task
    learning (A, Theta' = A Theta, F' = A F).

    forward(shared (B, C, h, w), then) -> (features (B, T*C, h, w), tokens' (T, C), affinity (T, T) or
    None). The per-task layers that follow the mixing belong to the caller (see ``hitts.py``), who may
    pass them as ``then``: the features returned are then ``then(features)``, computed without keeping
    the T-times-wider mixed features for backward (``apply_to_gated``).
    """

    def __init__(
        self,
        num_tasks: int,
        channels: int,
        inter_task: bool = True,
        init_std: float = 1.0,
        channel_scale: bool = False,
        trainable_tokens: bool = True,
    ) -> None:
        super().__init__()
        theta = make_tokens(num_tasks, channels, init_std, trainable_tokens)
        if trainable_tokens:
            self.theta = theta
        else:
            self.register_buffer("theta", theta)
        self.channel_scale = gate_scale_init(channels) if channel_scale else None
        self.q = nn.Linear(channels, channels) if inter_task else None
        self.k = nn.Linear(channels, channels) if inter_task else None
        init_layers(self)

    def forward(
        self, shared: torch.Tensor, then: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        affinity = None if self.q is None else task_affinity(self.theta, self.q, self.k)
        mixed, _ = mixed_gates(shared, self.theta, affinity, self.channel_scale)
        features = gate_features(shared, mixed) if then is None else apply_to_gated(then, shared, mixed)
        tokens = self.theta if affinity is None else affinity @ self.theta
        return features, tokens, affinity


class MultiScaleGlobalTokens(nn.Module):
    """Multi-scale global task token learning (Appendix A.2).

    Tokens theta (T, C), C = channels of the coarsest scale. Per scale j (channels C_j):
    theta^(j) = W^{s->m,(j)}_t theta_t (one Linear C -> C_j per task and scale), gating of F_s^(j),
    inter-task learning with that scale's own Q, K and A^(j), then a per-task conv3x3-BN-ReLU at C_j
    (the authors' code; ``scale_ffn`` False leaves it out, see ``ModelConfig.scale_ffn``).
    Fusion per task: the 1x1 conv over the concatenated scales, applied per scale and summed on the
    ``out_size`` grid (exact: a 1x1 conv commutes with bilinear resampling, so each scale is resampled
    where it is cheaper: a finer scale before its 1x1, a coarser one after); tokens:
    theta'_t = sum_j W^{m->s,(j)}_t theta'^(j)_t (one Linear C_j -> D per task and scale). A single
    bias stands for the sum of the per-scale biases.

    forward(feats [(B, C_j, h_j, w_j)], out_size) ->
    (features (B, T*D, *out_size), tokens' (T, D), affinity (T, T) = mean over scales, or None).
    """

    def __init__(
        self,
        num_tasks: int,
        channels: Sequence[int],
        width: int,
        inter_task: bool = True,
        init_std: float = 1.0,
        channel_scale: bool = False,
        trainable_tokens: bool = True,
        scale_ffn: bool = True,
    ) -> None:
        super().__init__()
        t, c = num_tasks, channels[-1]
        theta = make_tokens(t, c, init_std, trainable_tokens)  # (T, C); authors: N(0, 1)
        if trainable_tokens:
            self.theta = theta
        else:
            self.register_buffer("theta", theta)
        self.channel_scale = (
            nn.ParameterList(gate_scale_init(cj) for cj in channels) if channel_scale else None
        )
        self.to_scale = nn.ModuleList(TaskLinear(t, c, cj) for cj in channels)
        self.from_scale = nn.ModuleList(
            TaskLinear(t, cj, width, bias=j == 0) for j, cj in enumerate(channels)
        )
        self.q = nn.ModuleList(nn.Linear(cj, cj) for cj in channels) if inter_task else None
        self.k = nn.ModuleList(nn.Linear(cj, cj) for cj in channels) if inter_task else None
        self.ffn = nn.ModuleList(TaskConvBNReLU(t, cj, cj) for cj in channels) if scale_ffn else None
        self.fuse = nn.ModuleList(TaskConv(t, cj, width, 1, bias=j == 0) for j, cj in enumerate(channels))
        if inter_task:
            init_layers(self.q)
            init_layers(self.k)

    def forward(
        self, feats: list[torch.Tensor], out_size: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        fused, tokens, affinities = 0, 0, []
        for j, f in enumerate(feats):
            scale_tokens = self.to_scale[j](self.theta.unsqueeze(1)).squeeze(1)  # (T, C_j)
            affinity = None if self.q is None else task_affinity(scale_tokens, self.q[j], self.k[j])
            scale = None if self.channel_scale is None else self.channel_scale[j]
            mixed, _ = mixed_gates(f, scale_tokens, affinity, scale)  # (B, T, h_j, w_j)
            if affinity is not None:
                scale_tokens = affinity @ scale_tokens
                affinities.append(affinity)
            fused = fused + apply_to_gated(self._scale_branch(j, out_size), f, mixed)
            tokens = tokens + self.from_scale[j](scale_tokens.unsqueeze(1)).squeeze(1)  # (T, D)
        affinity = torch.stack(affinities).mean(0) if affinities else None
        return fused, tokens, affinity

    def _scale_branch(self, j: int, out_size: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
        """Scale j's gated features (B, T*C_j, h_j, w_j) -> its share of the fused features
        (B, T*D, *out_size): the per-scale conv3x3-BN-ReLU, then the 1x1 fusion conv, run at the
        coarser of the scale's grid and the output grid (a finer grid is resampled first)."""

        def branch(x: torch.Tensor) -> torch.Tensor:
            if self.ffn is not None:
                x = self.ffn[j](x)  # (B, T*C_j, h_j, w_j)
            if x.shape[-2] * x.shape[-1] > out_size[0] * out_size[1]:  # finer grid: resample, then 1x1
                return self.fuse[j](resize_to(x, out_size))
            return resize_to(self.fuse[j](x), out_size)

        return branch


class IntraTaskAttention(nn.Module):
    """Intra-task learning: single-head self-attention over [theta'_t ; F'_t] for every task t.

    Keys and values: the pixels of F'_t reduced by a depthwise conv (kernel = stride = r; the map is
    zero-padded to a multiple of r first) plus the token. Queries: every pixel of F'_t and the token,
    or with ``reduced_queries`` (the authors' code) the same reduced pixels and token as the keys, the
    feature update then being upsampled (bilinear) to the input grid: r^2 times fewer query rows.
    Per-task linear maps for q, k, v and for the two outputs; scale D^-0.5. Feature part: projected
    back, added to the input, then a per-task conv3x3-BN-ReLU (the authors' code; ``ffn`` False leaves
    it out: the paper's intra-task learning is the attention alone, see ``ModelConfig.attention_ffn``).
    Token part: projected back and averaged over the batch (as in the authors' code), so tokens stay
    (T, D).

    forward(x (B, T*D, h, w), tokens (T, D)) -> (features (B, T*D, h, w), tokens (T, D)).
    """

    def __init__(
        self, num_tasks: int, width: int, reduction: int, reduced_queries: bool = False, ffn: bool = True
    ) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"attention_reduction must be >= 1, got {reduction}")
        t, d = num_tasks, width
        self.num_tasks, self.width, self.reduction = t, d, reduction
        self.reduced_queries = reduced_queries
        self.reduce = nn.Conv2d(t * d, t * d, reduction, stride=reduction, groups=t * d, bias=False)
        self.q, self.k, self.v = TaskLinear(t, d, d), TaskLinear(t, d, d), TaskLinear(t, d, d)
        self.feature_out, self.token_out = TaskLinear(t, d, d), TaskLinear(t, d, d)
        self.ffn = TaskConvBNReLU(t, d, d) if ffn else None
        init_layers(self.reduce)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q, k and v of the same input (B, T, N, D) as one batched product (three per-task linear maps
        side by side), each (B, T, N, D)."""
        weight = torch.cat([self.q.weight, self.k.weight, self.v.weight], dim=1)  # (T, 3D, D)
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias], dim=1)  # (T, 3D)
        qkv = torch.einsum("btni,toi->btno", x, weight) + bias.unsqueeze(1)
        return qkv.split(self.width, dim=-1)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.ffn is None else self.ffn(x)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        t, d, r = self.num_tasks, self.width, self.reduction
        pad_h, pad_w = -h % r, -w % r
        reduced = self.reduce(F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x)
        kv_in = torch.cat(
            [reduced.view(b, t, d, -1).transpose(2, 3), tokens.view(1, t, 1, d).expand(b, t, 1, d)], dim=2
        )  # (B, T, N_r + 1, D)
        scale = d**-0.5
        if self.reduced_queries:  # authors' form: queries = keys' inputs, update upsampled
            q, k, v = self._qkv(kv_in)
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)  # (B, T, N_r + 1, D)
            hr, wr = reduced.shape[-2:]
            update = self.feature_out(out[:, :, :-1]).transpose(2, 3).reshape(b, t * d, hr, wr)
            padded = (h + pad_h, w + pad_w)  # the reduced grid spans the padding
            if self.ffn is None:
                features = add_resized(x, update, padded)
            else:  # x + up(update) is recomputed for backward, not kept (x is kept anyway)
                features = apply_recomputed(self.ffn, add_resized, x, update, padded)
            return features, self.token_out(out[:, :, -1:].mean(0)).squeeze(1)
        k, v = self.k(kv_in), self.v(kv_in)
        pixels = x.view(b, t, d, h * w).transpose(2, 3)  # (B, T, N, D)
        out_pixels = F.scaled_dot_product_attention(self.q(pixels), k, v, scale=scale)  # (B, T, N, D)
        q_token = self.q(tokens.unsqueeze(1)).unsqueeze(0).expand(b, t, 1, d)
        out_token = F.scaled_dot_product_attention(q_token, k, v, scale=scale)  # (B, T, 1, D)
        update = self.feature_out(out_pixels).transpose(2, 3).reshape(b, t * d, h, w)
        features = self._ffn(x + update)
        tokens = self.token_out(out_token.mean(0)).squeeze(1)  # (T, D)
        return features, tokens
