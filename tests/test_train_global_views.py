"""The global branch seeing the photo at other sizes (ModelArgs.global_views): the area resize it uses is OpenCV's,
the views change the answer, and the choice travels through export and train.from_onnx."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.test_train_from_onnx import SIZE, export, trained_looking
from train.export import example_inputs, load_model
from train.from_onnx import main, rebuild
from train.model import area_resize


@pytest.mark.parametrize(("src", "dst"), [(128, 96), (128, 64), (128, 100), (32, 24), (7, 3)])
def test_the_area_resize_is_opencvs(src: int, dst: int) -> None:
    image = np.random.default_rng(src * dst).uniform(0, 100, (src, src)).astype(np.float32)
    ours = area_resize(torch.from_numpy(image)[None, None], dst)[0, 0].numpy()
    np.testing.assert_allclose(ours, cv2.resize(image, (dst, dst), interpolation=cv2.INTER_AREA), atol=1e-3)


def test_the_area_resize_keeps_its_own_size_and_refuses_to_enlarge() -> None:
    x = torch.rand(2, 1, 16, 16)
    assert area_resize(x, 16) is x
    with pytest.raises(ValueError, match="shrinks"):
        area_resize(x, 20)


def answer(model: torch.nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(x) for x in feeds.values())).numpy()  # type: ignore[no-any-return]


def test_views_change_the_answer_and_the_input_size_alone_is_no_change() -> None:
    model = trained_looking(adapter=False, readout="regression")
    feeds = example_inputs(model.args, 3, SIZE, seed=2)
    plain = answer(model, feeds)
    model.args.global_views = [SIZE]
    np.testing.assert_allclose(answer(model, feeds), plain, atol=1e-5)
    model.args.global_views = [24]
    assert np.abs(answer(model, feeds) - plain).max() > 1e-2
    model.args.global_views = [16, 24]
    assert answer(model, feeds).shape == plain.shape


def test_the_views_travel_through_the_file_and_back(tmp_path: Path) -> None:
    model = trained_looking(adapter=True, readout="regression")
    model.args.global_views = [16, 24]
    path = export(model, tmp_path / "views.onnx")
    rebuilt, ckpt = rebuild(path)
    assert rebuilt.args.global_views == [16, 24]
    assert ckpt["model_args"]["global_views"] == [16, 24]
    feeds = example_inputs(rebuilt.args, 4, SIZE, seed=5)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (from_file,) = session.run(["ab"], feeds)
    assert np.abs(answer(rebuilt, feeds) - from_file).max() < 1e-3


def test_from_onnx_writes_a_checkpoint_with_the_views_asked_for(tmp_path: Path) -> None:
    path = export(trained_looking(adapter=False, readout="regression"), tmp_path / "model.onnx")
    main([str(path), str(tmp_path / "plain.pt")])
    main([str(path), str(tmp_path / "views.pt"), "--global_views", "24"])
    plain, _ = load_model(str(tmp_path / "plain.pt"))
    views, _ = load_model(str(tmp_path / "views.pt"))
    assert (plain.args.global_views, views.args.global_views) == ([], [24])
    feeds = example_inputs(plain.args, 2, SIZE, seed=1)
    assert np.abs(answer(views, feeds) - answer(plain, feeds)).max() > 1e-2
