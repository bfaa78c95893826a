"""Feature maps of a network stage as an image (`predict(visualize=True)`); re-exported by utils.plotting."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch

from ultralytics.utils import LOGGER, write_atomic

GRID_COLUMNS = 8
TILE = 96  # pixels per channel tile (the longer side)
GAP = 2


def channel_tiles(fmap: np.ndarray, tile: int = TILE) -> list[np.ndarray]:
    """(C, H, W) float → one uint8 grey image per channel, each min-max stretched to 0..255 and resized so that its
    longer side is `tile` pixels (nearest neighbour: every activation stays a visible block)."""
    h, w = fmap.shape[1:]
    size = (max(1, round(tile * w / max(h, w))), max(1, round(tile * h / max(h, w))))
    tiles = []
    for ch in fmap:
        lo, hi = float(ch.min()), float(ch.max())
        norm = (ch - lo) / (hi - lo) if hi > lo else np.zeros_like(ch)
        tiles.append(cv2.resize((norm * 255).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST))
    return tiles


def tile_grid(tiles: list[np.ndarray], columns: int = GRID_COLUMNS, gap: int = GAP) -> np.ndarray:
    """Equal-size tiles → one image, row-major, `gap` white pixels between them."""
    th, tw = tiles[0].shape
    rows = -(-len(tiles) // columns)
    cols = min(columns, len(tiles))
    grid = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * (th + gap): r * (th + gap) + th, c * (tw + gap): c * (tw + gap) + tw] = t
    return grid


def feature_visualization(x: torch.Tensor, module_type: str, stage: int, n: int = 32,
                          save_dir: str | Path = Path("runs/detect/exp")) -> Path | None:
    """Save the first `n` channels of the first image of a stage's output `x` (B, C, H, W) as
    save_dir/stage{stage}_{Module}_features.png (a grid, each channel stretched to its own range) and their values
    as the matching .npy. Outputs that are not feature maps (the Detect head's, 1×1 maps) are skipped: None."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[-2] <= 1 or x.shape[-1] <= 1:
        return None
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    fmap = x[0, :n].detach().float().cpu().numpy()
    stem = f"stage{stage}_{module_type.split('.')[-1]}_features"
    png = save_dir / f"{stem}.png"
    ok, encoded = cv2.imencode(".png", tile_grid(channel_tiles(fmap)))
    write_atomic(png, encoded.tobytes())
    values = io.BytesIO()
    np.save(values, fmap)
    write_atomic(save_dir / f"{stem}.npy", values.getvalue())
    LOGGER.debug(f"Saving {png}... ({len(fmap)}/{x.shape[1]})")
    return png
