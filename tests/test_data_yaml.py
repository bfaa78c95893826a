"""Dataset yaml resolution: paths, names, packaged yamls, download and its failure modes."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from ultralytics.data.dataset import YOLODataset
from ultralytics.data.download import safe_unzip
from ultralytics.data.utils import DATASETS_CFG_DIR, check_det_dataset, find_dataset_yaml, get_image_files
from ultralytics.utils import ASSETS, SETTINGS, yaml_load, yaml_save

from conftest import ASSET_STEMS  # noqa: E402


def make_dataset(root: Path, assets: Path, n: int = 3, split: str = "train2017") -> Path:
    """Copy the first n bundled images + labels into root/images/<split>, root/labels/<split>; return root."""
    src = sorted((assets / "images").glob("*.jpg"))[:n]
    for d in ("images", "labels"):
        (root / d / split).mkdir(parents=True, exist_ok=True)
    for f in src:
        shutil.copy2(f, root / "images" / split / f.name)
        shutil.copy2(assets / "labels" / f.with_suffix(".txt").name, root / "labels" / split)
    return root


def write_yaml(file: Path, **data) -> Path:
    yaml_save(file, data)
    return file


def test_packaged_assets_yaml_resolves_to_the_bundled_images():
    """coco8-assets.yaml's relative path is resolved against its own folder: ultralytics/assets, in any install."""
    d = check_det_dataset("coco8-assets.yaml")
    assert d["path"] == ASSETS.parent.resolve()
    assert d["train"] == d["val"] == str(ASSETS.resolve())
    assert d["nc"] == 80 and d["names"][0] == "person" and d["names"][79] == "toothbrush"
    assert d["names"] == {int(k): v for k, v in yaml_load(DATASETS_CFG_DIR / "coco128.yaml")["names"].items()}
    assert all(isinstance(k, int) and isinstance(v, str) for k, v in d["names"].items())
    assert d["yaml_file"] == str(DATASETS_CFG_DIR / "coco8-assets.yaml")
    assert [Path(f).stem for f in get_image_files(d["train"])] == list(ASSET_STEMS)  # (no dataset: no cache written)


def test_copied_assets_yaml_resolves(assets):
    d = check_det_dataset(assets / "data.yaml")
    assert d["path"] == assets and d["train"] == d["val"] == str(assets / "images")
    assert d["yaml_file"] == str((assets / "data.yaml").resolve())


@pytest.mark.parametrize("name,nc", [("coco128.yaml", 80), ("coco8.yaml", 80), ("coco.yaml", 80), ("shapes.yaml", 5)])
def test_packaged_yamls_resolve_by_bare_name(name, nc):
    f = find_dataset_yaml(name)
    assert f == DATASETS_CFG_DIR / name
    raw = yaml_load(f)
    assert len(raw["names"]) == nc and raw["download"]


def test_packaged_coco128_uses_datasets_dir(assets, tmp_path):
    datasets = Path(SETTINGS["datasets_dir"])
    datasets.mkdir(parents=True, exist_ok=True)
    link = datasets / "coco128"
    if not link.exists():  # a coco128-like folder built from the bundled images
        link.symlink_to(make_dataset(tmp_path / "coco128", assets, n=8), target_is_directory=True)
    d = check_det_dataset("coco128.yaml")
    assert d["path"] == link.resolve() or d["path"] == link
    assert Path(d["train"]).is_dir() and d["nc"] == 80


def test_relative_path_against_yaml_folder_then_datasets_dir(tmp_path, assets):
    make_dataset(tmp_path / "proj" / "mydata", assets)
    y = write_yaml(tmp_path / "proj" / "data.yaml", path="mydata", train="images/train2017",
                   val="images/train2017", names=["a"] * 80)
    assert check_det_dataset(y)["path"] == (tmp_path / "proj" / "mydata").resolve()
    # not beside the yaml -> datasets_dir
    ds_root = make_dataset(Path(SETTINGS["datasets_dir"]) / "elsewhere", assets)
    y2 = write_yaml(tmp_path / "proj" / "data2.yaml", path="elsewhere", train="images/train2017",
                    val="images/train2017", names=["a"] * 80)
    d = check_det_dataset(y2)
    assert d["path"] == ds_root.resolve() and d["train"] == str(ds_root.resolve() / "images" / "train2017")


def test_names_list_or_mapping_normalised(tmp_path, assets):
    make_dataset(tmp_path, assets)
    y = write_yaml(tmp_path / "a.yaml", path=".", train="images/train2017", val="images/train2017",
                   names={"0": "cat", "1": "dog"})
    assert check_det_dataset(y)["names"] == {0: "cat", 1: "dog"}
    y = write_yaml(tmp_path / "b.yaml", path=".", train="images/train2017", val="images/train2017",
                   names=["cat", "dog", "cow"], nc=3)
    d = check_det_dataset(y)
    assert d["names"] == {0: "cat", 1: "dog", 2: "cow"} and d["nc"] == 3


def test_nc_mismatch_names_the_yaml(tmp_path, assets):
    make_dataset(tmp_path, assets)
    y = write_yaml(tmp_path / "bad_nc.yaml", path=".", train="images/train2017", val="images/train2017",
                   names=["cat", "dog"], nc=3)
    with pytest.raises(ValueError, match=r"bad_nc\.yaml: nc=3 but 'names' has 2 entries"):
        check_det_dataset(y)


def test_names_with_gaps_rejected(tmp_path):
    y = write_yaml(tmp_path / "gaps.yaml", path=".", train="a", val="a", names={0: "a", 2: "c"})
    with pytest.raises(ValueError, match=r"gaps\.yaml: 'names' ids must run 0\.\.1 without gaps; missing \[1\]"):
        check_det_dataset(y)


def test_missing_yaml_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset yaml '.*nope\.yaml' not found.*coco128\.yaml.*shapes\.yaml"):
        check_det_dataset(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match="packaged names"):
        check_det_dataset("nope.yaml")


def test_yaml_without_names_clear_error(tmp_path):
    y = write_yaml(tmp_path / "nonames.yaml", path=".", train="images", val="images")
    with pytest.raises(ValueError, match=r"nonames\.yaml has no 'names' key: add the class names"):
        check_det_dataset(y)


def test_offline_download_failure_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    y = write_yaml(tmp_path / "remote.yaml", path="remote_ds", train="images/train", val="images/val", names=["a"],
                   download="https://example.com/remote_ds.zip")
    with pytest.raises(FileNotFoundError) as e:
        check_det_dataset(y)
    msg = str(e.value)
    root = Path(SETTINGS["datasets_dir"]).resolve() / "remote_ds"
    assert f"images not found at {root / 'images' / 'train'}" in msg
    assert "download from 'https://example.com/remote_ds.zip' failed (URLError: <urlopen error no network>)" in msg
    assert "Provide the data: put the dataset under" in msg and "data=shapes.yaml" in msg
    with pytest.raises(FileNotFoundError, match="autodownload is off"):
        check_det_dataset(y, autodownload=False)
    y2 = write_yaml(tmp_path / "nodl.yaml", path="remote_ds", train="images/train", val="images/val", names=["a"])
    with pytest.raises(FileNotFoundError, match="the yaml has no 'download' key"):
        check_det_dataset(y2)


def test_zip_download_with_urllib(tmp_path, assets):
    src = make_dataset(tmp_path / "build" / "zipped", assets, n=2)
    zf = tmp_path / "zipped.zip"
    with zipfile.ZipFile(zf, "w") as z:
        for f in src.rglob("*"):
            z.write(f, f.relative_to(src.parent))
    y = write_yaml(tmp_path / "z.yaml", path="zipped", train="images/train2017", val="images/train2017",
                   names=["a"] * 80, download=zf.as_uri())
    d = check_det_dataset(y)
    root = Path(SETTINGS["datasets_dir"]).resolve() / "zipped"
    assert d["path"] == root and len(list((root / "images" / "train2017").glob("*.jpg"))) == 2
    assert not (Path(SETTINGS["datasets_dir"]) / "zipped.zip").exists()  # the zip is removed after unzipping


def test_unsafe_zip_refused(tmp_path):
    zf = tmp_path / "evil.zip"
    with zipfile.ZipFile(zf, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="unsafe path"):
        safe_unzip(zf, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_unknown_builtin_reported(tmp_path):
    y = write_yaml(tmp_path / "u.yaml", path="nothing", train="images/train", val="images/val", names=["a"],
                   download="builtin:nope")
    with pytest.raises(FileNotFoundError, match=r"unknown builtin dataset 'nope'; known: \['shapes'\]"):
        check_det_dataset(y)


def test_txt_list_resolves_against_dataset_root(tmp_path, assets):
    root = make_dataset(tmp_path / "ds", assets, n=3)
    files = sorted((root / "images" / "train2017").glob("*.jpg"))
    (root / "lists").mkdir()
    lines = [f"./images/train2017/{files[0].name}", f"images/train2017/{files[1].name}", str(files[2]), ""]
    (root / "lists" / "train.txt").write_text("\n".join(lines))
    y = write_yaml(root / "d.yaml", path=".", train="lists/train.txt", val=["images/train2017"], names=["a"] * 80)
    d = check_det_dataset(y)
    assert isinstance(d["val"], list) and d["val"] == [str(root.resolve() / "images" / "train2017")]
    ds = YOLODataset(d["train"], imgsz=160, augment=False, data=d)
    assert sorted(Path(f).name for f in ds.im_files) == [f.name for f in files]


def test_list_of_folders(tmp_path, assets):
    root = make_dataset(tmp_path / "ds", assets, n=2, split="train2017")
    make_dataset(root, assets, n=3, split="val2017")
    y = write_yaml(root / "d.yaml", path=".", train=["images/train2017", "images/val2017"], val="images/val2017",
                   names=["a"] * 80)
    d = check_det_dataset(y)
    assert len(YOLODataset(d["train"], imgsz=160, augment=False, data=d)) == 5
