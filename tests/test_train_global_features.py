"""Global feature extractors; the pretrained one is our Inception-ResNet-v2, which must load timm's weight files.

timm itself does not install here, so tests/data/timm_inception_resnet_v2_state.txt holds the names and shapes of
timm's own inception_resnet_v2 state dict (its header says how it was generated), and the weights files below are
written in timm's format from that table. tests/data/timm_inception_resnet_v2_reference.txt holds timm's outputs for
the deterministic weights and images of tests/timm_reference.py, so the forward is checked too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.timm_reference import INPUT_SHAPES, deterministic_state, input_name, reference_image, summary
from train.config import parse_config
from train.global_features import CompactGlobal, InceptionResNetGlobal, build_global_extractor
from train.inception_resnet_v2 import InceptionResNetV2, load_timm_weights
from train.model import ColorizerNet, ModelArgs

TIMM_STATE = Path(__file__).parent / "data" / "timm_inception_resnet_v2_state.txt"
TIMM_REFERENCE = Path(__file__).parent / "data" / "timm_inception_resnet_v2_reference.txt"


def test_compact_extractor_gives_one_vector_per_image_at_any_size() -> None:
    extractor = CompactGlobal(64).eval()
    for size in (64, 96, 128):
        assert extractor(torch.randn(3, 1, size, size)).shape == (3, 64)


def timm_shapes() -> dict[str, tuple[int, ...]]:
    """timm's inception_resnet_v2 state dict (num_classes=0), name → shape, from the fixture."""
    shapes = {}
    for line in TIMM_STATE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split()
            shapes[name] = () if shape == "scalar" else tuple(int(n) for n in shape.split("x"))
    return shapes


@pytest.fixture(scope="module")
def timm_state() -> dict[str, torch.Tensor]:
    """A state dict as timm saves inception_resnet_v2 (with its 1000-class head), random values of modest size."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in timm_shapes().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1234)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.05
    state["classif.weight"] = torch.randn(1000, 1536, generator=gen)
    state["classif.bias"] = torch.randn(1000, generator=gen)
    return state


def test_our_inception_resnet_v2_has_timms_names_and_shapes() -> None:
    ours = {name: tuple(t.shape) for name, t in InceptionResNetV2().state_dict().items()}
    theirs = timm_shapes()
    assert len(theirs) == 1304  # the fixture was read whole
    assert sorted(ours.keys() - theirs.keys()) == []
    assert sorted(theirs.keys() - ours.keys()) == []
    assert {k: v for k, v in ours.items() if v != theirs[k]} == {}


def timm_reference() -> dict[str, list[float]]:
    """timm's features for tests/timm_reference.py's weights and images, summarised: "INPUT IMAGE WHAT" → values."""
    reference = {}
    for line in TIMM_REFERENCE.read_text().splitlines():
        if line and not line.startswith("#"):
            shape, image, what, *values = line.split()
            reference[f"{shape} {image} {what}"] = [float(v) for v in values]
    return reference


def labelled(key: str, message: str) -> str:
    return f"{key}: {message}"


@pytest.mark.slow
def test_our_forward_computes_what_timms_does() -> None:
    """Names and shapes all match while a forward can still be wrong (branch order, residual scale, a lost ReLU)."""
    model = InceptionResNetV2().eval()
    model.load_state_dict(deterministic_state(model.state_dict()))
    ours: dict[str, list[float]] = {}
    for shape in INPUT_SHAPES:
        with torch.no_grad():
            features = model(reference_image(shape))  # (N, 1536)
        ours |= {f"{input_name(shape)} {key}": values for key, values in summary(features).items()}
    reference = timm_reference()
    assert len(reference) == 9  # 3 images × (first 32, picked, mean and std): the fixture was read whole
    assert ours.keys() == reference.keys()
    for key, values in reference.items():
        if key.endswith("mean,std"):
            assert 1 < values[1] < 50, "the deterministic weights must keep activations alive for the check to bite"
        torch.testing.assert_close(
            torch.tensor(ours[key], dtype=torch.float64),
            torch.tensor(values, dtype=torch.float64),
            rtol=1e-4,
            atol=1e-4,
            msg=functools.partial(labelled, key),
        )


@pytest.mark.slow
def test_a_timm_checkpoint_loads_into_a_frozen_backbone_and_only_the_projection_learns(
    tmp_path: Path, timm_state: dict[str, torch.Tensor]
) -> None:
    state = timm_state
    torch.save(state, tmp_path / "inception_resnet_v2.pth")
    weights = str(tmp_path / "inception_resnet_v2.pth")
    model = ColorizerNet(ModelArgs(head="regression", global_extractor="inception_resnet_v2", global_weights=weights))
    extractor = model.global_features
    assert isinstance(extractor, InceptionResNetGlobal)
    loaded = extractor.backbone.state_dict()
    assert loaded.keys() == state.keys() - {"classif.weight", "classif.bias"}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)

    model.train()
    assert not any(m.training for m in extractor.backbone.modules())  # batch-norm statistics stay the file's
    assert not any(p.requires_grad for p in extractor.backbone.parameters())
    feats = extractor(torch.rand(1, 1, 64, 64) * 2 - 1)  # normalised L at 64×64; resized to 299 inside
    assert feats.shape == (1, 256)
    assert torch.isfinite(feats).all()
    feats.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in extractor.proj.parameters())
    assert all(p.grad is None for p in extractor.backbone.parameters())
    after = extractor.backbone.state_dict()
    assert all(torch.equal(after[k], state[k]) for k in after)  # a training-mode forward moved no statistic


@pytest.mark.slow
def test_a_checkpoint_without_classifier_or_batch_counters_loads(
    tmp_path: Path, timm_state: dict[str, torch.Tensor]
) -> None:
    """Checkpoints ported from TensorFlow may lack num_batches_tracked; batch norm then starts it at 0."""
    state = {k: v for k, v in timm_state.items() if not k.endswith("num_batches_tracked") and "classif" not in k}
    torch.save(state, tmp_path / "no_counters.pth")
    model = InceptionResNetV2()
    load_timm_weights(model, tmp_path / "no_counters.pth")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    counters = loaded.keys() - state.keys()
    assert len(counters) == 204  # one per batch norm
    assert all(k.endswith("num_batches_tracked") and loaded[k] == 0 for k in counters)


def test_no_weights_path_is_an_error_not_a_download() -> None:
    with pytest.raises(ValueError, match="--global_weights PATH"):
        build_global_extractor("inception_resnet_v2", 256, "")


def test_the_config_refuses_inception_resnet_v2_without_weights(capsys: pytest.CaptureFixture[str]) -> None:
    """Refused when the command line is read, not after the data has been cached and the model built."""
    with pytest.raises(SystemExit):
        parse_config(["--global_extractor", "inception_resnet_v2"])
    assert "--global_extractor inception_resnet_v2 needs --global_weights PATH" in capsys.readouterr().err
    cfg = parse_config(["--global_extractor", "inception_resnet_v2", "--global_weights", "irv2.pth"])
    assert cfg.global_weights == "irv2.pth"


def test_a_missing_weights_file_says_which_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no Inception-ResNet-v2 weights file at .*absent.pth"):
        build_global_extractor("inception_resnet_v2", 256, str(tmp_path / "absent.pth"))


def renamed_layer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace("conv2d_7b.", "conv2d_7c."): v for k, v in state.items()}


def wrong_shape(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return state | {"conv2d_7b.conv.weight": torch.zeros(1536, 2080, 3, 3)}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (renamed_layer, r"not a timm inception_resnet_v2 checkpoint: 5 keys missing \['conv2d_7b\.conv\.weight'"),
        (wrong_shape, r"(?s)does not fit timm's inception_resnet_v2: .*size mismatch for conv2d_7b\.conv\.weight"),
    ],
)
def test_a_checkpoint_of_another_network_is_refused(
    tmp_path: Path,
    timm_state: dict[str, torch.Tensor],
    change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    message: str,
) -> None:
    torch.save(change(timm_state), tmp_path / "other.pth")
    with pytest.raises(ValueError, match=message):
        load_timm_weights(InceptionResNetV2(), tmp_path / "other.pth")


def test_a_file_that_is_no_state_dict_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.pth").write_text("not weights")
    with pytest.raises(ValueError, match="notes.pth is not a PyTorch weights file"):
        load_timm_weights(InceptionResNetV2(), tmp_path / "notes.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth holds a list, not a flat state dict"):
        load_timm_weights(InceptionResNetV2(), tmp_path / "list.pth")
