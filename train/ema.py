"""An exponential moving average of a model's weights (Polyak averaging), kept beside the training weights.

On our ~600 training photos the calibration split's PSNR peaks early and then falls while the loss keeps falling,
and averaging six snapshots of one cycle after the fact lifted its regression head by 0.5 dB there
(docs/training_history.md, the ninth cycle). An average kept during training does the same at every step, for free.
BatchNorm's running statistics are averaged with the weights, so the averaged model is whole on its own.
"""

from __future__ import annotations

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the average's decay must lie in (0, 1), not {decay}")
        self.decay = decay
        self.load_state_dict(model.state_dict())

    def rate(self, step: int) -> float:
        """The decay at a step: smaller at first, so the average does not keep the random start for long."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        keep = self.rate(step)
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.state[key].lerp_(value.detach(), 1.0 - keep)
            else:  # counters such as BatchNorm's num_batches_tracked
                self.state[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.state: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in state.items()}
