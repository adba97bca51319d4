"""The pretrained global feature extractor loads its weights from a local file (no hub on this machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train.global_features import CompactGlobal, build_global_extractor


def test_compact_extractor_gives_one_vector_per_image_at_any_size() -> None:
    extractor = CompactGlobal(64).eval()
    for size in (64, 96, 128):
        assert extractor(torch.randn(3, 1, size, size)).shape == (3, 64)


def timm_importable() -> bool:
    try:
        import timm  # noqa: F401  # timm imports torchvision, which has no build for torch 2.13 CPU on PyPI
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not timm_importable(), reason="timm (and torchvision, which it imports) is not installed")
def test_inception_resnet_v2_loads_weights_from_a_local_file(tmp_path: Path) -> None:
    import timm

    reference = timm.create_model("inception_resnet_v2", pretrained=False, num_classes=0)
    torch.nn.init.constant_(reference.conv2d_1a.conv.weight, 0.0123)  # a value no initialiser would give
    weights = tmp_path / "irv2.pth"
    torch.save(reference.state_dict(), weights)
    extractor = build_global_extractor("inception_resnet_v2", 256, str(weights))
    loaded = extractor.backbone.conv2d_1a.conv.weight
    assert torch.allclose(loaded, torch.full_like(loaded, 0.0123))
    assert not any(p.requires_grad for p in extractor.backbone.parameters())
    assert extractor(torch.randn(2, 1, 64, 64)).shape == (2, 256)
