"""Fine-grained task tokens (paper Sec. 3.2, with the details of the authors' code).

From a task's global token theta' (D,): the orthogonal embeddings o = I_{C_p} are embedded by a
Linear(C_p -> D) and added to the token repeated C_p times, giving a (D, C_p) matrix; an MLP acting
along the C_p axis (Linear-LayerNorm-GELU twice, then Linear) maps it to phi (C_p, D): one fine token
of width D per class / bin / cluster centre.

The fine score maps are S = softplus(phi . F') over the channels of the task feature F' (C_p maps),
and the logits G' = Conv3x3(G * S) with G = Conv1x1(F').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .heads import init_layers


class FineTokenGenerator(nn.Module):
    """phi (C_p, D) from one task token (D,).

    orthogonal=False is the "w/o OE" ablation: the MLP sees only the repeated token.
    """

    def __init__(self, num_outputs: int, width: int, hidden: int, orthogonal: bool = True) -> None:
        super().__init__()
        self.embed = nn.Linear(num_outputs, width) if orthogonal else None
        self.register_buffer("basis", torch.eye(num_outputs), persistent=False)  # o = I_{C_p}
        self.mlp = nn.Sequential(
            nn.Linear(num_outputs, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, num_outputs),
        )
        init_layers(self)
        with torch.no_grad():  # phi . F' sums D products: keep it O(1) at init, like attention's D^-0.5
            self.mlp[-1].weight.mul_(width**-0.5)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        c_p = self.basis.shape[0]
        z = token.unsqueeze(1).expand(-1, c_p)  # (D, C_p): the token repeated C_p times
        if self.embed is not None:  # W_o o with o = I: embed(I).T = weight + bias, without the matmul
            z = z + (self.embed.weight + self.embed.bias.unsqueeze(1))  # (D, C_p)
        return self.mlp(z).T  # MLP along C_p for each of the D rows -> (C_p, D)


def fine_scores(features: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """S = softplus(phi . F'): features (B, D, h, w), phi (C_p, D) -> (B, C_p, h, w)."""
    return F.softplus(F.conv2d(features, phi[:, :, None, None]))


def project_and_score(
    features: torch.Tensor, classifier: nn.Conv2d, phi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """G = Conv1x1(F') and S = softplus(phi . F') in one convolution (both read the same F').

    features (B, D, h, w), classifier Conv2d(D -> C_p, 1x1), phi (C_p, D) -> G, S, each (B, C_p, h, w).
    """
    weight = torch.cat([classifier.weight, phi[:, :, None, None]])
    bias = torch.cat([classifier.bias, classifier.bias.new_zeros(phi.shape[0])])
    g, s = F.conv2d(features, weight, bias).chunk(2, dim=1)
    return g, F.softplus(s)


class FineRefine(nn.Module):
    """G' = Conv3x3(G * S) per task (or Conv3x3(G) without fine tokens)."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_outputs, num_outputs, 3, padding=1)
        init_layers(self)

    def forward(self, g: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        return self.conv(g if scores is None else g * scores)
