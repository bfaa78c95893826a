"""YOLOv8 building blocks and BiFormer's Bi-Level Routing Attention."""

from .block import (C2f, C3, DFL, SPPF, BiLevelRoutingAttention, Bottleneck, QKVLinear, TopkRouting,
                    ZeroLePE)
from .conv import Concat, Conv, DWConv, autopad
from .head import Detect

__all__ = [
    "autopad",
    "Conv",
    "DWConv",
    "Concat",
    "Bottleneck",
    "C2f",
    "C3",
    "SPPF",
    "DFL",
    "TopkRouting",
    "QKVLinear",
    "ZeroLePE",
    "BiLevelRoutingAttention",
    "Detect",
]
