"""The HiTTs model: a shared backbone, the MTL baseline's per-task head, and the hierarchical task
tokens (global tokens, Sec. 3.1 / A.2; fine-grained tokens, Sec. 3.2) woven into that head.

Two layouts, chosen by the stride of the shared feature F_s:

* F_s at stride 8 (efficientnet_lite0, resnet18: the neck fuses the scales). The token stage runs at
  stride 8, the head's resolution. Per task t:
  F_t = F_s * g_t (g_t = sigmoid(<F_s, theta_t>)), F'_t = sum_j A_tj F_j, then the MTL head's
  conv3x3-BN-ReLU x2 (its first layer is the "per-task conv3x3-BN-ReLU after mixing"), intra-task
  attention with theta'_t (+ its conv3x3-BN-ReLU) -> task feature F''_t, M_f = sigmoid(<F''_t, theta''_t>),
  G_t = the MTL head's 1x1 (D -> C_p) of F''_t, S_t = softplus(phi_t . F''_t), G'_t = Conv3x3(G_t * S_t),
  upsampled to the input size. With ``multi_scale`` the per-scale token stage (A.2) replaces the
  shared neck and delivers F'_t at stride 8. With ``head="aspp"`` (the authors' PASCAL-Context
  model) the head's layers are ASPP (rates 12/24/36) on F'_t, then conv3x3-BN-ReLU, then intra-task
  attention and the fine-token head, as in the authors' per-task decoder.
* F_s at stride 1 (segnet). Attention, gating and a T-times-wider feature at full resolution cost
  about 2.3x the MTL memory (the paper's 21.19 vs 9.36 GB), so the token stage runs at stride
  ``MIN_TOKEN_STRIDE`` (4) on avg-pooled F_s: gating, mixing, conv3x3-BN-ReLU, intra-task attention ->
  F''_t, M_f, S_t at stride 4. The MTAN head stays at full resolution: it reads F_s + up(F''_t)
  (bilinear), G_t = its conv3x3 then 1x1, and G'_t = Conv3x3(G_t * up(S_t)).

Switches from the authors' code and this project's diagnostics (``ModelConfig``): a learned
per-channel scale before the gate (``gate_channel_scale``), untrained tokens (``train_global_tokens``
False), in the stride-8 layout a head that reads F'_t + F_s (``head_reads_shared``), intra-task
attention with the authors' reduced queries (``attention_queries``), a multi-scale token stage
without the per-scale conv3x3-BN-ReLU (``scale_ffn`` False), and intra-task attention without its
conv3x3-BN-ReLU (``attention_ffn`` False). The two convolutions are the authors' code, not the paper's
text; they are most of HiTTs' extra arithmetic over the MTL baseline (README, Performance).

Ablations (``ModelConfig.use_*``): no inter-task -> A = identity (no "affinity" output); no intra-task
-> no attention block (theta'' = theta'); no global tokens -> no gating, mixing or attention at all (the
head reads F_s exactly as the MTL head does; no "global_scores" / "affinity"), and the fine tokens
come from a learned per-task vector (T, D) in place of theta''; no fine tokens -> G' = Conv3x3(G);
no orthogonal embeddings -> the MLP sees the repeated token only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks import TaskSpec
from .backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from .fine_tokens import FineRefine, FineTokenGenerator, fine_scores, project_and_score
from .global_tokens import GlobalTokens, IntraTaskAttention, MultiScaleGlobalTokens
from .heads import (
    ASPP_RATES,
    NECK_STRIDE,
    HeadLayers,
    Neck,
    TaskClassifiers,
    TaskConvBNReLU,
    head_kind,
    resize_maps,
    resize_to,
)

MIN_TOKEN_STRIDE = 4
"""The token stage never runs finer than stride 4 (SegNet's stride-1 feature is avg-pooled to it)."""


class HiTTs(nn.Module):
    """Multi-task network with hierarchical task tokens. See the module docstring.

    forward(image (B, 3, H, W)) -> dict (docs/architecture.md): "logits" {task: (B, C_p, H, W)},
    "task_features" {task: (B, D, h, w)}, and as the switches allow "global_scores" {task: (B, h, w)},
    "fine_scores" {task: (B, C_p, h, w)}, "affinity" (T, T), "fine_tokens" {task: (C_p, D)}, with
    (h, w) = (H, W) / ``feature_stride``. With ``upsample_logits`` False the logits stay at the
    resolution of G (the ONNX export upsamples them itself).

    Global tokens after intra-task attention are averaged over the batch (authors' code), so an
    image's outputs depend slightly on the other images of its batch.
    """

    def __init__(
        self,
        specs: Sequence[TaskSpec],
        backbone: str = "efficientnet_lite0",
        pretrained: bool = True,
        backbone_checkpoint: str | None = None,
        width: int = 64,
        multi_scale: bool = False,
        use_global_tokens: bool = True,
        use_inter_task: bool = True,
        use_intra_task: bool = True,
        use_fine_tokens: bool = True,
        use_orthogonal_embeddings: bool = True,
        attention_reduction: int = 4,
        fine_mlp_hidden: int = 128,
        token_init_std: float = 1.0,
        gate_channel_scale: bool = False,
        train_global_tokens: bool = True,
        head_reads_shared: bool = False,
        scale_ffn: bool = True,
        reduced_queries: bool = False,
        attention_ffn: bool = True,
        dilated: bool = False,
        head: str = "auto",
        aspp_rates: Sequence[int] = ASPP_RATES,
    ) -> None:
        super().__init__()
        self.task_names, self.num_outputs = tuple(s.name for s in specs), tuple(s.num_outputs for s in specs)
        self.width, t = width, len(specs)
        self.input_mean, self.input_std = IMAGENET_MEAN, IMAGENET_STD
        self.backbone = build_backbone(backbone, pretrained, backbone_checkpoint, dilated)
        channels, strides = self.backbone.channels, self.backbone.strides
        if multi_scale and len(channels) == 1:
            raise ValueError(
                f"multi_scale needs a multi-scale backbone (efficientnet_lite0, resnet18), not {backbone}"
            )
        self.multi_scale = multi_scale and use_global_tokens
        self.head_reads_shared = head_reads_shared and not self.multi_scale
        self.neck = None if self.multi_scale else Neck(channels, strides, width)
        shared_stride = NECK_STRIDE if len(channels) > 1 else strides[0]
        self.pool = max(MIN_TOKEN_STRIDE // shared_stride, 1)
        self.feature_stride = shared_stride * self.pool

        token_args = dict(inter_task=use_inter_task, init_std=token_init_std)
        token_args.update(channel_scale=gate_channel_scale, trainable_tokens=train_global_tokens)
        self._build_token_stage(
            use_global_tokens,
            channels,
            token_args,
            scale_ffn,
            use_intra_task,
            attention_reduction,
            (reduced_queries, attention_ffn),
        )
        self.layers = HeadLayers(head_kind(backbone, head), t, width, aspp_rates)
        self.classifiers = TaskClassifiers(width, self.num_outputs)
        self._build_fine_tokens(
            use_fine_tokens, use_global_tokens, fine_mlp_hidden, use_orthogonal_embeddings
        )

    def _build_token_stage(
        self,
        use_global_tokens: bool,
        channels: Sequence[int],
        token_args: dict,
        scale_ffn: bool,
        use_intra_task: bool,
        attention_reduction: int,
        attention_form: tuple[bool, bool],
    ) -> None:
        """Global tokens (single- or multi-scale), the token stage's own conv where the head runs
        elsewhere, and intra-task attention."""
        t, d = len(self.task_names), self.width
        self.global_tokens: GlobalTokens | MultiScaleGlobalTokens | None = None
        self.token_ffn: TaskConvBNReLU | None = None
        self.attention: IntraTaskAttention | None = None
        if not use_global_tokens:
            return
        if self.multi_scale:
            self.global_tokens = MultiScaleGlobalTokens(t, channels, d, scale_ffn=scale_ffn, **token_args)
        else:
            self.global_tokens = GlobalTokens(t, d, **token_args)
        if self.pool > 1:  # the head runs elsewhere: the token stage has its own post-mixing conv
            self.token_ffn = TaskConvBNReLU(t, d, d)
        if use_intra_task:
            self.attention = IntraTaskAttention(t, d, attention_reduction, *attention_form)

    def _build_fine_tokens(
        self, use_fine_tokens: bool, use_global_tokens: bool, hidden: int, orthogonal_embeddings: bool
    ) -> None:
        """Fine-token generators (one per task), the "w/o global tokens" stand-in vectors, and the
        per-task refinement conv (always present: G' = Conv3x3(G) without fine tokens)."""
        t, d = len(self.task_names), self.width
        self.fine = None
        self.task_vectors = None
        if use_fine_tokens:
            self.fine = nn.ModuleList(
                FineTokenGenerator(c, d, hidden, orthogonal_embeddings) for c in self.num_outputs
            )
            if not use_global_tokens:  # documented stand-in for theta'' in the "w/o global tokens" ablation
                self.task_vectors = nn.Parameter(torch.randn(t, d))
        self.refine = nn.ModuleList(FineRefine(c) for c in self.num_outputs)

    def _token_stage(
        self, feats: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Backbone features -> (task features F'' (B, T*D, h, w), or the shared (B, D, h, w) without
        global tokens; head features feeding G (B, T*D, h_G, w_G); tokens theta'' (T, D) or None;
        affinity (T, T) or None)."""
        t, d = len(self.task_names), self.width
        tokens = affinity = None
        if self.pool == 1:  # token stage and head at stride 8
            if self.global_tokens is None:
                x = self.layers(self.neck(feats), shared=True)
            else:
                if self.multi_scale:
                    grid = feats[self.backbone.strides.index(NECK_STRIDE)].shape[-2:]
                    x, tokens, affinity = self.global_tokens(feats, grid)
                    x = self.layers(x)  # the MTL head's conv3x3-BN-ReLU x2
                elif self.head_reads_shared:  # F'_t + F_s, as the SegNet layout's head reads
                    shared = self.neck(feats)
                    x, tokens, affinity = self.global_tokens(shared)
                    b, _, hh, ww = x.shape
                    x = self.layers((x.view(b, t, d, hh, ww) + shared.unsqueeze(1)).view(b, t * d, hh, ww))
                else:  # the head's layers read F'_t (the T-wide F'_t is not kept for backward)
                    x, tokens, affinity = self.global_tokens(self.neck(feats), self.layers)
                if self.attention is not None:
                    x, tokens = self.attention(x, tokens)
            return x, x, tokens, affinity
        shared = self.neck(feats)  # (B, D, H, W), stride 1
        pooled = F.avg_pool2d(shared, self.pool)  # (B, D, h, w), token-stage stride
        if self.global_tokens is None:
            return pooled, self.layers(shared, shared=True), None, None
        x, tokens, affinity = self.global_tokens(pooled, self.token_ffn)  # then the token stage's conv
        if self.attention is not None:
            x, tokens = self.attention(x, tokens)
        b, _, hh, ww = shared.shape
        full = resize_to(x, (hh, ww)).view(b, t, d, hh, ww) + shared.unsqueeze(1)  # F_s + up(F'')
        return x, self.layers(full.view(b, t * d, hh, ww)), tokens, affinity

    def forward(self, image: torch.Tensor, upsample_logits: bool = True) -> dict:
        size = image.shape[-2:]
        t, d, names = len(self.task_names), self.width, self.task_names
        task_features, head, tokens, affinity = self._token_stage(self.backbone(image))

        def task_slice(z: torch.Tensor, i: int) -> torch.Tensor:  # task i's (B, D, ., .) view
            return z[:, i * d : (i + 1) * d] if z.shape[1] == t * d else z

        phis = None  # fine tokens, one (C_p, D) per task
        if self.fine is not None:
            base = tokens if tokens is not None else self.task_vectors
            phis = [gen(base[i]) for i, gen in enumerate(self.fine)]
        gs, scores = [], []  # G (B, C_p, h_G, w_G) and S (B, C_p, h, w) per task
        for i, classifier in enumerate(self.classifiers.convs):
            feature = task_slice(task_features, i)
            if self.pool == 1 and phis:
                g, s = project_and_score(feature, classifier, phis[i])
            else:
                g = classifier(task_slice(head, i))
                s = fine_scores(feature, phis[i]) if phis else None
            gs.append(g)
            scores.append(s)
        scores_at_g = resize_maps(scores, gs[0].shape[-2:]) if phis else scores
        logits = [refine(g, s) for refine, g, s in zip(self.refine, gs, scores_at_g)]
        if upsample_logits:
            logits = resize_maps(logits, size)

        out: dict = {
            "logits": dict(zip(names, logits)),
            "task_features": {n: task_slice(task_features, i) for i, n in enumerate(names)},
        }
        if tokens is not None:  # global tokens present: task features are per task
            # M_f = sigmoid(<F''_t, theta''_t>): one grouped 1x1 conv reads the stacked features in place
            scores_f = torch.sigmoid(F.conv2d(task_features, tokens.reshape(t, d, 1, 1), groups=t))
            out["global_scores"] = {n: scores_f[:, i] for i, n in enumerate(names)}
        if phis:
            out["fine_scores"] = dict(zip(names, scores))
            out["fine_tokens"] = dict(zip(names, phis))
        if affinity is not None:
            out["affinity"] = affinity
        return out
