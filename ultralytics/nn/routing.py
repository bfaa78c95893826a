"""Routing maps of Bi-Level Routing Attention: which regions each query region attends to, drawn over the image.

    from ultralytics.nn.routing import plot_routing
    plot_routing(DetectionModel("yolov8n_BiFormer.yaml"), "bus.jpg", save_dir="routing")  # one PNG per BRA

Each figure has, left, an n_win × n_win grid of panels, one per query region (row-major, as the regions): the
image (cut to the padded feature map's extent) dimmed, the query region outlined in red and its `topk` routed
regions tinted green. Right, a heat map of the token attention of one query region (averaged over its tokens and
the heads) over the tokens of its routed regions. `save_routing_map` is the same figure for one layer, called by
`DetectionModel.predict(visualize=True)` next to the feature maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from ultralytics.nn.modules.block import BiLevelRoutingAttention
from ultralytics.utils.plotting import save_image

__all__ = ["Routing", "RoutingLayout", "routing_of", "draw_routing", "save_routing_map", "plot_routing"]

DIM, TINT, ROUTED_MIX = 0.3, (0, 200, 0), 0.55  # brightness kept outside the routed regions; BGR tint and its share


@dataclass
class Routing:
    """The routing of batch item 0 of one BRA call.

    r_idx: (n_win², topk) routed regions of every query region (the module's `r_idx[0]`); heat: (Hp, Wp) attention
    of query region `query` over the padded feature map's tokens (0 outside its routed regions); size: the
    unpadded feature map (H, W).
    """

    n_win: int
    r_idx: np.ndarray
    heat: np.ndarray
    query: int
    size: tuple[int, int]


@dataclass(frozen=True)
class RoutingLayout:
    """Pixel geometry of a routing figure: title band, panel size, gap between panels."""

    n_win: int
    panel_w: int
    panel_h: int
    top: int = 30
    gap: int = 4

    def panel_origin(self, q: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of query region q's panel."""
        j, i = divmod(q, self.n_win)
        return self.gap + i * (self.panel_w + self.gap), self.top + j * (self.panel_h + self.gap)

    def region_rect(self, r: int, w: int, h: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of region r inside a w × h picture of the padded map (x1, y1 exclusive)."""
        j, i = divmod(r, self.n_win)
        s = self.n_win
        return round(i * w / s), round(j * h / s), round((i + 1) * w / s), round((j + 1) * h / s)


def routing_of(bra: BiLevelRoutingAttention, x: torch.Tensor, query: int | None = None) -> Routing:
    """Run `bra` on batch item 0 of its input x (B, C, H, W) with `ret_attn_mask=True` and keep what a figure needs.

    `query` picks the query region of the heat map (default: the centre region).
    """
    nw = bra.n_win
    with torch.no_grad():
        _, _, r_idx, attn = bra(x[:1], ret_attn_mask=True)
    p2, topk = r_idx.shape[1:]
    query = p2 // 2 if query is None else query
    if not 0 <= query < p2:
        raise ValueError(f"routing: query region {query} is out of range for n_win={nw} (0 … {p2 - 1})")
    hh, ww = x.shape[-2:]
    h, w = -(-hh // nw), -(-ww // nw)
    per_key = attn[query].float().mean((0, 1)).view(topk, -1).cpu().numpy()  # (topk, T') over heads and queries
    side = int(round(per_key.shape[1] ** 0.5))
    kh, kw = (h, w) if per_key.shape[1] == h * w else (side, per_key.shape[1] // side)  # pooled keys: kv grid
    heat = np.zeros((nw * h, nw * w), np.float32)
    idx = r_idx[0].cpu().numpy()
    for slot, r in enumerate(idx[query]):
        j, i = divmod(int(r), nw)
        block = cv2.resize(per_key[slot].reshape(kh, kw), (w, h), interpolation=cv2.INTER_NEAREST)
        heat[j * h:(j + 1) * h, i * w:(i + 1) * w] = block.reshape(h, w)
    return Routing(nw, idx, heat, query, (hh, ww))


def _padded_picture(image: np.ndarray, routing: Routing) -> np.ndarray:
    """The image cut/extended (black) to the extent of the padded feature map, in image pixels."""
    hh, ww = routing.size
    hp, wp = routing.heat.shape
    sy, sx = image.shape[0] / hh, image.shape[1] / ww
    out = np.zeros((round(hp * sy), round(wp * sx), 3), np.uint8)
    out[:image.shape[0], :image.shape[1]] = image[:out.shape[0], :out.shape[1]]
    return out


def draw_routing(image: np.ndarray, routing: Routing, title: str = "", panel_w: int = 96
                 ) -> tuple[np.ndarray, RoutingLayout]:
    """The routing figure (BGR uint8) of `routing` over `image` (H0, W0, 3 BGR uint8), and its layout."""
    pic = _padded_picture(image, routing)
    nw = routing.n_win
    lay = RoutingLayout(nw, panel_w, max(8, round(panel_w * pic.shape[0] / pic.shape[1])))
    small = cv2.resize(pic, (lay.panel_w, lay.panel_h), interpolation=cv2.INTER_AREA).astype(np.float32)
    grid_w, grid_h = lay.gap + nw * (lay.panel_w + lay.gap), nw * (lay.panel_h + lay.gap)
    heat_h = grid_h - lay.gap
    heat_w = max(8, round(heat_h * pic.shape[1] / pic.shape[0]))
    fig = np.full((lay.top + grid_h, grid_w + heat_w + lay.gap, 3), 255, np.uint8)
    for q in range(nw * nw):
        panel = small * DIM
        for r in routing.r_idx[q]:
            x0, y0, x1, y1 = lay.region_rect(int(r), lay.panel_w, lay.panel_h)
            panel[y0:y1, x0:x1] = small[y0:y1, x0:x1] * (1 - ROUTED_MIX) + np.array(TINT, np.float32) * ROUTED_MIX
        panel = panel.clip(0, 255).astype(np.uint8)
        x0, y0, x1, y1 = lay.region_rect(q, lay.panel_w, lay.panel_h)
        cv2.rectangle(panel, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 255), 1)
        px, py = lay.panel_origin(q)
        fig[py:py + lay.panel_h, px:px + lay.panel_w] = panel
    heat = routing.heat / max(float(routing.heat.max()), 1e-12)
    heat = cv2.applyColorMap((cv2.resize(heat, (heat_w, heat_h)) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    big = cv2.resize(pic, (heat_w, heat_h), interpolation=cv2.INTER_AREA)
    heat = cv2.addWeighted(big, 0.45, heat, 0.55, 0)
    for r in routing.r_idx[routing.query]:
        x0, y0, x1, y1 = lay.region_rect(int(r), heat_w, heat_h)
        cv2.rectangle(heat, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
    x0, y0, x1, y1 = lay.region_rect(routing.query, heat_w, heat_h)
    cv2.rectangle(heat, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 255), 2)
    fig[lay.top:lay.top + heat_h, grid_w:grid_w + heat_w] = heat
    text = title or f"n_win {nw}, topk {routing.r_idx.shape[1]}"
    text += f" | red: query region, green: its routed regions | right: attention of query region {routing.query}"
    cv2.putText(fig, text, (lay.gap, lay.top - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return fig, lay


def _to_bgr(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float 0..1 RGB → (H, W, 3) uint8 BGR."""
    arr = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr[..., ::-1])


def _bra_inputs(module: nn.Module, x: torch.Tensor) -> list[tuple[BiLevelRoutingAttention, torch.Tensor]]:
    """The BRA modules inside `module` and their inputs when `module(x)` runs (the module itself if it is one)."""
    if isinstance(module, BiLevelRoutingAttention):
        return [(module, x)]
    seen: list[tuple[BiLevelRoutingAttention, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0])))
             for m in module.modules() if isinstance(m, BiLevelRoutingAttention)]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def save_routing_map(module: nn.Module, x: torch.Tensor, image: torch.Tensor, layer_index: int, save_dir: Path,
                     query: int | None = None) -> Path:
    """Save the routing figure of one model layer; returns its path `save_dir/stage{i}_{Type}_routing.png`.

    module: the layer (a BiLevelRoutingAttention, or a block holding one: its first BRA is drawn); x: the layer's
    input (B, C, H, W), batch item 0 is drawn; image: the network input (B, 3, H0, W0), float 0..1 RGB.
    """
    bra, inp = _bra_inputs(module, x[:1])[0]
    routing = routing_of(bra, inp, query)
    title = f"layer {layer_index} {type(module).__name__}, n_win {bra.n_win}, topk {bra.topk}"
    fig, _ = draw_routing(_to_bgr(image[0]), routing, title)
    path = Path(save_dir) / f"stage{layer_index}_{type(module).__name__}_routing.png"
    return save_image(fig, path)  # atomic; creates the folder


def _load(image: str | Path | np.ndarray | torch.Tensor, imgsz: int, stride: int) -> torch.Tensor:
    """A path, a BGR uint8 array or a (3, H, W) / (1, 3, H, W) 0..1 RGB tensor → (1, 3, H, W) network input.

    Files and arrays are resized so the long side is `imgsz` and padded (grey 114) at the right/bottom to
    multiples of the model stride; tensors are used as given.
    """
    if isinstance(image, torch.Tensor):
        return image[None] if image.dim() == 3 else image
    im = cv2.imread(str(image)) if isinstance(image, (str, Path)) else image
    if im is None:
        raise FileNotFoundError(f"plot_routing: cannot read image {image}")
    r = imgsz / max(im.shape[:2])
    h, w = max(1, round(im.shape[0] * r)), max(1, round(im.shape[1] * r))
    im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.full((-(-h // stride) * stride, -(-w // stride) * stride, 3), 114, np.uint8)
    out[:h, :w] = im
    return torch.from_numpy(np.ascontiguousarray(out[..., ::-1])).permute(2, 0, 1)[None].float() / 255


def plot_routing(model: nn.Module, image: str | Path | np.ndarray | torch.Tensor, save_dir: str | Path = "runs/routing",
                 layer: int | list[int] | None = None, query: int | None = None, imgsz: int = 640) -> list[Path]:
    """Save one routing figure per BRA of `model` (a DetectionModel, or a YOLO facade) for `image`.

    layer: the model layer index(es) to draw (default: every layer holding a BRA); query: the query region of the
    heat maps (default: the centre region). Figures are `save_dir/stage{i}_{Type}_routing.png` (a `_j` suffix for
    the j-th further BRA inside one layer). Returns their paths in layer order.
    """
    net = model.model if hasattr(model, "model") and not isinstance(model.model, nn.Sequential) else model
    layers = list(net.model) if isinstance(getattr(net, "model", None), nn.Sequential) else [net]
    wanted = None if layer is None else set([layer] if isinstance(layer, int) else layer)
    stride = int(max(getattr(net, "stride", torch.tensor([32.0])).max().item(), 1))
    device = next(net.parameters()).device
    x = _load(image, imgsz, stride).to(device)
    found: list[tuple[int, str, int, BiLevelRoutingAttention, torch.Tensor]] = []
    hooks = []
    for pos, m in enumerate(layers):
        index = getattr(m, "i", pos)
        if wanted is not None and index not in wanted:
            continue
        bras = [b for b in m.modules() if isinstance(b, BiLevelRoutingAttention)]
        for j, b in enumerate(bras):
            hooks.append(b.register_forward_pre_hook(
                lambda mod, args, i=index, name=type(m).__name__, j=j: found.append((i, name, j, mod, args[0][:1]))))
    training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(x)
    finally:
        net.train(training)
        for h in hooks:
            h.remove()
    save_dir = Path(save_dir)
    paths = []
    for i, name, j, bra, inp in found:
        title = f"layer {i} {name}{f' BRA {j}' if j else ''}, n_win {bra.n_win}, topk {bra.topk}"
        fig, _ = draw_routing(_to_bgr(x[0]), routing_of(bra, inp, query), title)
        path = save_dir / f"stage{i}_{name}_routing{f'_{j}' if j else ''}.png"
        paths.append(save_image(fig, path))
    return paths
