"""YOLOv8 building blocks and BiFormer's Bi-Level Routing Attention."""

from .block import (C2f, C3, DFL, SPPF, BiLevelRoutingAttention, Bottleneck, QKVLinear, TopkRouting,
                    ZeroLePE, quiet_padding_warnings)
from .biformer import BiFormerBlock, C2f_BiFormer
from .conv import Concat, Conv, DWConv, autopad
from .extra_blocks import C1, C2, SPP, BottleneckCSP, C3Ghost, C3TR, C3x, GhostBottleneck
from .extra_conv import (CBAM, ChannelAttention, Conv2, ConvTranspose, DWConvTranspose2d, Focus, GhostConv,
                         RepConv, SpatialAttention)
from .head import Detect
from .transformer import TransformerBlock, TransformerLayer

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
    "BiFormerBlock",
    "C2f_BiFormer",
    "quiet_padding_warnings",
    "Detect",
    "Conv2",
    "ConvTranspose",
    "DWConvTranspose2d",
    "Focus",
    "GhostConv",
    "RepConv",
    "ChannelAttention",
    "SpatialAttention",
    "CBAM",
    "C1",
    "C2",
    "C3x",
    "C3TR",
    "C3Ghost",
    "GhostBottleneck",
    "BottleneckCSP",
    "SPP",
    "TransformerLayer",
    "TransformerBlock",
]
