"""predict's model options: augment=True (test-time augmentation), embed (feature vectors), visualize (feature maps)
and DetectionModel.predict(profile=True). TTA boxes and embeddings are compared with the published package's, recorded
for the same seeded weights (tests/fixtures/published_predict_options/make_fixture.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from published_boxes_case import fixture_model, image_paths
from test_published_boxes import match_rows
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel
from ultralytics.nn.tta import TTA_VIEWS, level_sizes
from ultralytics.utils.plotting import channel_tiles, tile_grid
from ultralytics.utils.torch_utils import get_flops, scale_img

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "published_predict_options" / "options.json").read_text())
IMAGES = {p.name: p for p in image_paths()}


@pytest.fixture(scope="module")
def model() -> YOLO:
    yolo = YOLO("yolov8n.yaml")
    yolo.model.load_state_dict(fixture_model().state_dict(), strict=True)
    return yolo


@pytest.mark.parametrize("imgsz", sorted(FIXTURE["tta"]))
def test_tta_boxes_equal_published(model: YOLO, imgsz: str) -> None:
    for name, rows in FIXTURE["tta"][imgsz].items():
        r = model.predict(str(IMAGES[name]), augment=True, imgsz=int(imgsz), conf=0.25, iou=0.7, verbose=False)[0]
        b = r.boxes
        got = np.concatenate([b.xyxy.numpy(), b.conf.numpy()[:, None], b.cls.numpy()[:, None]], 1)
        worst_box, worst_conf = match_rows(np.array(rows, np.float64).reshape(-1, 6), got.astype(np.float64))
        assert worst_box < 0.01 and worst_conf < 1e-4, (imgsz, name, worst_box, worst_conf)


def test_tta_differs_from_plain_prediction(model: YOLO) -> None:
    img = str(IMAGES["000000000294.jpg"])
    plain = model.predict(img, imgsz=320, verbose=False)[0].boxes.data
    tta = model.predict(img, augment=True, imgsz=320, verbose=False)[0].boxes.data
    assert len(plain) != len(tta) or not torch.allclose(plain, tta)


def test_tta_merges_three_views_without_the_clipped_levels() -> None:
    m = fixture_model()
    x = torch.rand(1, 3, 256, 320)
    with torch.no_grad():
        merged, extra = m.predict(x, augment=True)
        plain = m.predict(x)[0]
    strides = [8, 16, 32]
    views = [scale_img(x, s, gs=32).shape[-2:] for s, _ in TTA_VIEWS]
    sizes = [level_sizes(h, w, strides) for h, w in views]
    expected = sum(sizes[0]) - sizes[0][-1] + sum(sizes[1]) + sum(sizes[2]) - sizes[2][0]
    assert extra is None and merged.shape == (1, 84, expected) == (1, 84, 3133)  # the published count for 256x320
    n_first = sum(sizes[0]) - sizes[0][-1]
    torch.testing.assert_close(merged[..., :n_first], plain[..., :n_first])  # view 1 is the unscaled image
    # the flipped view's box centres are mirrored back: a left-right symmetric image gives mirrored centres
    sym = torch.cat([x[..., :160], x[..., :160].flip(-1)], -1)
    with torch.no_grad():
        out = m.predict(sym, augment=True)[0][0]
        own = m._predict_once(scale_img(sym, TTA_VIEWS[1][0], gs=32))[0][0]
    seg = out[:, n_first: n_first + sum(sizes[1])]
    torch.testing.assert_close(seg[0] * TTA_VIEWS[1][0], 320 * TTA_VIEWS[1][0] - own[0], atol=2e-3, rtol=0)


def test_tta_needs_eval_mode() -> None:
    m = fixture_model().train()
    with pytest.raises(Exception, match="eval mode"):
        m.predict(torch.zeros(1, 3, 64, 64), augment=True)


def test_scale_img_pads_to_stride_multiples_with_grey() -> None:
    x = torch.zeros(1, 3, 100, 64)
    y = scale_img(x, 0.67, gs=32)
    assert y.shape[-2:] == (96, 64)  # int(67) rows → padded to 96; int(42.88) cols → 64
    assert torch.all(y[..., 67:, :] == 0.447) and torch.all(y[..., :67, :42] == 0)
    assert scale_img(x, 1.0) is x
    assert scale_img(x, 0.5, same_shape=True).shape[-2:] == (50, 32)


def test_embed_equals_published(model: YOLO) -> None:
    names = list(FIXTURE["embed"]["default"])
    paths = [str(IMAGES[n]) for n in names]
    default = model.embed(paths, verbose=False)
    assert isinstance(default, list) and len(default) == len(paths) and default[0].shape == (256,)
    layers = model.predict(paths, embed=FIXTURE["embed_layers"], verbose=False)
    assert layers[0].shape == (64 + 128 + 256,)
    for n, d, v in zip(names, default, layers):
        np.testing.assert_allclose(d.numpy(), FIXTURE["embed"]["default"][n], atol=1e-4)
        np.testing.assert_allclose(v.numpy(), FIXTURE["embed"]["layers"][n], atol=1e-4)


def test_embed_is_the_pooled_layer_outputs_in_layer_order() -> None:
    m = fixture_model()
    x = torch.rand(2, 3, 128, 128)
    seen = {}
    hooks = [m.model[i].register_forward_hook(lambda mod, a, out, i=i: seen.__setitem__(i, out)) for i in (4, 6)]
    with torch.no_grad():
        vecs = m.predict(x, embed=[6, 4])
    for h in hooks:
        h.remove()
    assert isinstance(vecs, tuple) and len(vecs) == 2
    for b in range(2):
        ref = torch.cat([seen[4][b].mean((1, 2)), seen[6][b].mean((1, 2))])
        torch.testing.assert_close(vecs[b], ref)


def test_embed_stream_yields_vectors(model: YOLO) -> None:
    gen = model.embed([str(p) for p in list(IMAGES.values())[:2]], stream=True, imgsz=160)
    vecs = list(gen)
    assert len(vecs) == 2 and all(v.shape == (256,) for v in vecs)


def test_profile_logs_every_layer(caplog: pytest.LogCaptureFixture) -> None:
    m = fixture_model()
    x = torch.zeros(1, 3, 128, 128)
    with caplog.at_level(logging.INFO, logger="ultralytics"), torch.no_grad():
        out = m.predict(x, profile=True)
    lines = [r.getMessage() for r in caplog.records]
    start = next(i for i, line in enumerate(lines) if "time (ms)" in line)
    rows = lines[start + 1: start + 2 + len(m.model)]
    assert len(rows) == len(m.model) + 1 and rows[-1].endswith("Total")
    assert [r.split()[-1] for r in rows[:-1]] == [layer.type for layer in m.model]
    total = rows[-1].split()
    assert float(total[1]) == pytest.approx(get_flops(m, 128), abs=0.02)
    assert int(float(total[2])) == sum(p.numel() for p in m.parameters())
    torch.testing.assert_close(out[0], m.predict(x)[0])  # profiling does not change the result


def test_visualize_saves_each_stage(tmp_path: Path) -> None:
    m = DetectionModel("yolov8n.yaml", verbose=False).eval()
    x = torch.rand(1, 3, 128, 96)
    captured = {}
    h = m.model[4].register_forward_hook(lambda mod, a, out: captured.setdefault("out", out))
    with torch.no_grad():
        m.predict(x, visualize=tmp_path)
    h.remove()
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == len(m.model) - 1  # every stage but the Detect head
    assert "stage4_C2f_features.png" in pngs and not any("Detect" in p for p in pngs)
    saved = np.load(tmp_path / "stage4_C2f_features.npy")
    np.testing.assert_allclose(saved, captured["out"][0, :32].numpy(), rtol=1e-6)
    grid = cv2.imread(str(tmp_path / "stage4_C2f_features.png"), cv2.IMREAD_GRAYSCALE)
    assert grid.shape == tile_grid(channel_tiles(saved)).shape


def test_channel_tiles_stretch_each_channel() -> None:
    fmap = np.stack([np.arange(4.0).reshape(2, 2), np.full((2, 2), 5.0)])
    tiles = channel_tiles(fmap, tile=4)
    assert tiles[0].min() == 0 and tiles[0].max() == 255 and tiles[0].shape == (4, 4)
    assert tiles[1].max() == 0  # a constant channel is drawn black, not divided by zero
    grid = tile_grid((tiles * 5)[:9], columns=8, gap=2)  # 9 tiles: two rows of 8 columns
    assert grid.shape == (2 * 4 + 2, 8 * 4 + 7 * 2)


def test_predict_visualize_writes_a_folder_per_image(model: YOLO, tmp_path: Path) -> None:
    img = IMAGES["000000000030.jpg"]
    r = model.predict(str(img), visualize=True, imgsz=160, project=str(tmp_path), name="vis", verbose=False)
    folder = Path(r[0].save_dir) / img.stem
    assert folder.is_dir() and len(list(folder.glob("stage*_features.png"))) == len(model.model.model) - 1


def test_visualize_adds_a_routing_map_per_bra_layer(tmp_path: Path) -> None:
    m = DetectionModel("yolov8n_BiFormer.yaml", verbose=False).eval()
    with torch.no_grad():
        m.predict(torch.rand(1, 3, 224, 224), visualize=tmp_path)
    bra_layers = [layer.i for layer in m.model if type(layer).__name__ == "BiLevelRoutingAttention"]
    routing = sorted(p.name for p in tmp_path.glob("*_routing.png"))
    assert routing == sorted(f"stage{i}_BiLevelRoutingAttention_routing.png" for i in bra_layers) and routing
    assert all(cv2.imread(str(tmp_path / name)) is not None for name in routing)


def test_fused_biformer_shows_every_stage_as_built(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = DetectionModel("yolov8n_BiFormer.yaml", verbose=False).eval()
    x = torch.rand(1, 3, 640, 640)
    with torch.no_grad():
        before = m.predict(x, embed=[13, 14])
        m.fuse(verbose=False)  # folds BRA's wo, and merges Upsample → Concat → BRA into one layer at P3
        assert type(m.model[15]).__name__ == "UpsampleConcatBRA"
        after = m.predict(x, embed=[13, 14])
        m.predict(x, visualize=tmp_path)
    torch.testing.assert_close(after[0], before[0])
    names = {p.name for p in tmp_path.glob("stage1[345]_*.png")}
    assert names == {"stage13_Upsample_features.png", "stage14_Concat_features.png",
                     "stage15_BiLevelRoutingAttention_features.png", "stage15_BiLevelRoutingAttention_routing.png"}


def test_predictor_embeds_biformer_layers_unfused() -> None:
    torch.manual_seed(0)
    yolo = YOLO("yolov8n_BiFormer.yaml")
    x = torch.rand(1, 3, 224, 224)
    got = yolo.predict(x, embed=[15], verbose=False)[0]  # a tensor source is fed as given
    with torch.no_grad():
        ref = yolo.model.eval().predict(x, embed=[15])[0]  # the BRA's own output, its wo not folded away
    torch.testing.assert_close(got, ref)
