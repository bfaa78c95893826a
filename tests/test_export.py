"""Export to ONNX and TorchScript: metadata, file placement, errors, dynamic shapes with BRA, and agreement of the
.pt, .onnx (onnxruntime) and .torchscript predictions for briefly trained yolov8n and yolov8n_BiFormer."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from ultralytics.cfg import CfgError
from ultralytics.engine.exporter import Exporter, export_model
from ultralytics.engine.predictor import DetectionPredictor, predict
from ultralytics.engine.results import Results
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils import SETTINGS, yaml_load

from conftest import COCO128, require  # noqa: E402

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

META_KEYS = {"description", "author", "date", "version", "license", "stride", "task", "batch", "imgsz", "names", "args"}


def _model(cfg: str = "yolov8n.yaml"):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    m = DetectionModel(cfg, verbose=False)
    m.names = {i: f"class{i}" for i in range(80)}
    return m


def _run_onnx(path: str, x: torch.Tensor) -> np.ndarray:
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]


# ---------------------------------------------------------------------------------------------------- basics
def test_bogus_format_lists_supported_formats(tmp_path):
    with pytest.raises(CfgError, match=r"format='bogus'.*torchscript, onnx"):
        export_model(_model(), tmp_path / "m.pt", format="bogus")
    assert not list(tmp_path.iterdir())


def test_onnx_metadata_placement_and_simplify_warning(logs):
    model = _model()
    f = export_model(model, format="onnx", imgsz=64, simplify=True)  # a yaml-built model: into a run folder
    assert Path(f) == Path(SETTINGS["runs_dir"]) / "detect" / "export" / "yolov8n.onnx"
    proto = onnx.load(f)
    assert proto.opset_import[0].version == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert META_KEYS <= set(meta)
    assert json.loads(meta["names"])["3"] == "class3" and json.loads(meta["imgsz"]) == [64, 64]
    assert json.loads(meta["stride"]) == 32 and meta["task"] == "detect" and json.loads(meta["batch"]) == 1
    backend = AutoBackend(f)
    assert backend.backend == "onnx" and backend.names[3] == "class3" and backend.stride == 32
    assert backend.imgsz == [64, 64] and not backend.dynamic and not backend.fp16 and backend.batch == 1
    if find_spec("onnxslim") is None and find_spec("onnxsim") is None:
        assert any("simplify=True needs onnxslim or onnxsim" in m for m in logs)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval()(x)[0]
    torch.testing.assert_close(backend(x), expected, atol=1e-3, rtol=1e-4)
    assert Path(export_model(model, format="onnx", imgsz=64)).parent.name == "export2"


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.14: torch.jit.load is deprecated
def test_torchscript_metadata_and_half_on_cpu(tmp_path, logs):
    model = _model()
    f = export_model(model, tmp_path / "weights" / "best.pt", format="torchscript", imgsz=[64, 96], half=True)
    assert f == str(tmp_path / "weights" / "best.torchscript")
    assert any("half=True export needs a CUDA device" in m for m in logs)
    extra = {"config.txt": ""}
    torch.jit.load(f, _extra_files=extra)
    meta = json.loads(extra["config.txt"])
    assert META_KEYS <= set(meta) and meta["imgsz"] == [64, 96] and meta["names"]["0"] == "class0"
    backend = AutoBackend(f)
    assert backend.backend == "torchscript" and backend.imgsz == [64, 96] and not backend.fp16
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.eval()(x)[0]
    torch.testing.assert_close(backend(x), expected, atol=1e-3, rtol=1e-4)


def test_static_batch_file_runs_any_number_of_images(tmp_path):
    f = export_model(_model(), tmp_path / "b2.pt", format="onnx", imgsz=64, batch=2)
    backend = AutoBackend(f)
    assert backend.batch == 2
    res = predict(backend, [np.zeros((64, 64, 3), np.uint8)] * 3, conf=0.0, max_det=3, verbose=False)
    assert len(res) == 3 and all(isinstance(r, Results) for r in res)


def test_dynamic_onnx_with_bra_runs_at_other_sizes(tmp_path):
    """Traced at 224 every BRA input divides by n_win=7 (no padding); the exporter traces at a size that pads."""
    model = _model("yolov8n_BiFormer.yaml").eval()
    f = export_model(model, tmp_path / "bra.pt", format="onnx", imgsz=224, dynamic=True)
    proto = onnx.load(f)
    assert {"TopK", "Gather"} <= {n.op_type for n in proto.graph.node}
    backend = AutoBackend(f)
    assert backend.dynamic and backend.imgsz == [224, 224]
    for shape in [(1, 3, 224, 224), (2, 3, 96, 128), (1, 3, 160, 160)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            expected = model(x)[0]
        got = torch.from_numpy(_run_onnx(f, x))
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-4)


@pytest.mark.slow
def test_dynamo_exporter_fallback(tmp_path, monkeypatch, logs):
    """When the TorchScript-based exporter fails, torch.export's exporter (opset >= 18) writes the file."""
    def broken(*args, **kwargs):
        raise RuntimeError("legacy exporter unavailable")

    monkeypatch.setattr(Exporter, "_onnx_legacy", broken)
    model = _model()
    f = export_model(model, tmp_path / "d.pt", format="onnx", imgsz=64)
    assert any("trying torch.export-based exporter" in m for m in logs)
    proto = onnx.load(f)
    assert proto.opset_import[0].version >= 18 and {p.key for p in proto.metadata_props} >= META_KEYS
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval()(x)[0]
    torch.testing.assert_close(torch.from_numpy(_run_onnx(f, x)), expected, atol=1e-3, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------- agreement
MODELS = ["yolov8n.yaml", "yolov8n_BiFormer.yaml"]


def _calibrate(ckpt_path: Path, images: list[str], per_image: int = 12) -> None:
    """Shift the class biases of a briefly trained checkpoint so ~`per_image` anchors pass conf 0.25.

    One epoch on a few images leaves every score near the prior (~1e-5), i.e. no detections to compare;
    a uniform shift of the class logits keeps the ranking of the trained model and makes detections appear.
    """
    from ultralytics.checkpoints import atomic_save, load_checkpoint, model_from_checkpoint, state_dict_of

    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt).eval()
    pred = DetectionPredictor(overrides={"imgsz": 160, "rect": False, "verbose": False})
    pred.setup_model(model)
    from ultralytics.data.loaders import InferenceSource

    im, _ = pred.preprocess(list(InferenceSource(images)))
    scores = pred.model(im)[:, 4:].amax(1).clamp(1e-12, 1 - 1e-7)  # (B, anchors)
    logits = torch.log(scores / (1 - scores))
    kth = logits.topk(per_image, dim=1).values[:, -1].median()
    shift = float(np.log(0.25 / 0.75) - kth)
    head = model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias += shift
    ckpt["ema"] = state_dict_of(model)
    ckpt["model"] = state_dict_of(model)
    atomic_save(ckpt, ckpt_path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, assets) -> dict[str, dict[str, str]]:
    """yolov8n and yolov8n_BiFormer trained for 1 epoch (the 8 bundled images at imgsz 160), calibrated, exported."""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("trained")
    data = root / "coco8_small.yaml"  # the bundled dataset under a name of its own (written into the metadata)
    data.write_text(json.dumps(yaml_load(assets / "data.yaml")))
    images = [str(p) for p in sorted((assets / "images").glob("*.jpg"))[4:8]]
    out: dict[str, dict[str, str]] = {}
    for cfg in MODELS:
        model = YOLO(cfg)
        model.train(data=str(data), epochs=1, imgsz=160, batch=8, workers=0, plots=False,
                    val=False, project=str(root), name=Path(cfg).stem, verbose=False)
        best = Path(model.ckpt_path)
        assert best.name == "best.pt" and best.exists()
        _calibrate(best, images)
        from ultralytics.checkpoints import load_checkpoint, model_from_checkpoint

        net = model_from_checkpoint(load_checkpoint(best))
        out[cfg] = {
            "pt": str(best),
            "onnx": export_model(net, best, format="onnx", imgsz=160, data=str(data)),
            "torchscript": export_model(net, best, format="torchscript", imgsz=160),
            "onnx_dynamic": export_model(net, best.with_name("dynamic.pt"), format="onnx", imgsz=160, dynamic=True),
            "images": images,
        }
    return out


def _assert_same_detections(a: list[Results], b: list[Results], tol: float = 1.0) -> int:
    """Same number of boxes, same classes, corners within `tol` px (matched greedily by class and distance)."""
    total = 0
    for ra, rb in zip(a, b, strict=True):
        da, db = ra.boxes.numpy().data, rb.boxes.numpy().data
        assert len(da) == len(db), f"{ra.path}: {len(da)} vs {len(db)} boxes"
        free = list(range(len(db)))
        for row in da:
            cands = [j for j in free if db[j, 5] == row[5]]
            assert cands, f"{ra.path}: no box of class {int(row[5])} in the other result"
            j = min(cands, key=lambda j: np.abs(db[j, :4] - row[:4]).max())
            assert np.abs(db[j, :4] - row[:4]).max() <= tol, f"{ra.path}: {row[:4]} vs {db[j, :4]}"
            assert abs(db[j, 4] - row[4]) < 1e-3
            free.remove(j)
        total += len(da)
    return total


@pytest.mark.slow
@pytest.mark.parametrize("cfg", MODELS)
def test_pt_onnx_torchscript_predictions_agree(trained, cfg):
    files = trained[cfg]
    images = files["images"]
    kw = dict(imgsz=160, verbose=False)
    pt_square = predict(files["pt"], images, rect=False, **kw)
    n = _assert_same_detections(pt_square, predict(files["onnx"], images, **kw))
    assert n >= len(images), "calibration should leave detections to compare"
    _assert_same_detections(pt_square, predict(files["torchscript"], images, **kw))
    # dynamic ONNX takes the same minimal letterbox as the .pt
    pt_rect = predict(files["pt"], images, **kw)
    _assert_same_detections(pt_rect, predict(files["onnx_dynamic"], images, **kw))
    assert {tuple(r.orig_shape) for r in pt_rect} == {tuple(r.orig_shape) for r in pt_square}


@pytest.mark.slow
def test_exported_files_sit_next_to_the_checkpoint(trained):
    for files in trained.values():
        best = Path(files["pt"])
        assert Path(files["onnx"]) == best.with_suffix(".onnx")
        assert Path(files["torchscript"]) == best.with_suffix(".torchscript")
        meta = AutoBackend(files["onnx"]).metadata
        assert meta["names"][0] == "person" and meta["imgsz"] == [160, 160]
        assert "trained on coco8_small.yaml" in meta["description"]


@pytest.mark.slow
def test_published_checkpoint_hits_ground_truth_in_every_runtime(reference_checkpoint, request, tmp_path):
    """Real weights (the published yolov8n trained on COCO128 at 320, ../shared): predictions land on the labelled
    objects (letterbox and scaling back are right), and the .pt, .onnx and .torchscript agree on many real boxes.
    Without ../shared, the synthesized published file (no detector): its .pt predictions are exactly those of our
    yolov8n loaded with the weights it was written with, and its exports agree with it on many real boxes."""
    from torchvision.ops import box_iou

    from ultralytics.checkpoints import build_model_from_published, load_checkpoint
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.ops import xywhn2xyxy

    pt = reference_checkpoint.path
    model = build_model_from_published(load_checkpoint(pt))
    if reference_checkpoint.real:
        # 11 COCO128 images: on the 8 bundled ones this briefly trained model is confident about 4 boxes only.
        # Letterbox and scaling back are also checked without ../shared (test_validation's oracle, test_predict's
        # fixed boxes).
        coco128 = require(COCO128 / "images" / "train2017", "COCO128 images")
        images = [str(p) for p in sorted(coco128.glob("*.jpg"))[1:12]]
        kw = dict(imgsz=320, verbose=False)
        res = predict(str(pt), images, **kw)
        hit = confident = 0
        for r in res:
            lab = np.loadtxt(r.path.replace("/images/", "/labels/").rsplit(".", 1)[0] + ".txt", ndmin=2)
            gt = torch.tensor(xywhn2xyxy(lab[:, 1:], r.orig_shape[1], r.orig_shape[0]), dtype=torch.float32)
            iou = box_iou(gt, r.boxes.xyxy.float())  # (gt, pred)
            same = torch.tensor(lab[:, :1]) == r.boxes.cls.view(1, -1).double()
            found = ((iou > 0.5) & same).any(0)  # per prediction: on a labelled object of its class
            sure = r.boxes.conf > 0.5
            hit += int(found[sure].sum())
            confident += int(sure.sum())
        assert confident >= 15 and hit >= 0.9 * confident, f"only {hit}/{confident} confident boxes on labelled objects"
    else:
        images = [str(p) for p in sorted((request.getfixturevalue("assets") / "images").glob("*.jpg"))]
        kw = dict(imgsz=320, conf=0.02, verbose=False)  # its scores mostly stay near the class prior
        direct = DetectionModel("yolov8n.yaml", verbose=False)
        direct.load_state_dict(reference_checkpoint.weights)
        direct.names = dict(reference_checkpoint.names)
        res, ref = predict(str(pt), images, **kw), predict(direct, images, **kw)
        assert sum(len(r.boxes) for r in res) >= 10
        for a, b in zip(res, ref, strict=True):
            assert a.names == b.names and torch.equal(a.boxes.data, b.boxes.data), a.path

    square = predict(str(pt), images, rect=False, **kw)
    onnx_file = export_model(model, tmp_path / "pub.pt", format="onnx", imgsz=320)
    ts_file = export_model(model, tmp_path / "pub.pt", format="torchscript", imgsz=320)
    n = _assert_same_detections(square, predict(onnx_file, images, **kw))
    assert n >= 10
    _assert_same_detections(square, predict(ts_file, images, **kw))
