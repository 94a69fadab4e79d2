"""Tune's logger callbacks, set to the project's x-axis: the training step, not the report count.

Tune logs each result at `timesteps_total`, or at `training_iteration` (the count of reports)
when that is unset or 0; on this project's uneven evaluation schedule the count distorts every
curve, and the step-0 evaluation would land at 1. Each callback is Tune's own with that one
choice changed: TensorBoard's here (every sweep writes its event files), W&B's and MLflow's in
grok/trackers.py, imported only by a sweep that asks for them.
"""

from __future__ import annotations

import sys
from typing import Any

from ray.tune.logger import TBXLoggerCallback

from grok.config import Config
from grok.overrides import apply_overrides, flatten

STEP = "step"  # the metric that holds the training step


def trial_params(base: dict[str, Any], trial_config: dict[str, Any]) -> dict[str, Any]:
    """A trial's full config as flat dotted keys: the base with the trial's values on top."""
    cfg = apply_overrides(Config.from_dict(base, "experiment"), trial_config, "trial")
    return flatten(cfg.to_dict())


class StepTBXLoggerCallback(TBXLoggerCallback):
    """TensorBoard event files with every metric at its training step."""

    def __init__(self) -> None:
        load_tensorboardx()
        super().__init__()

    def log_trial_result(self, iteration: int, trial, result: dict):
        # Tune's writer takes its global step from training_iteration when timesteps_total is
        # unset, and drops training_iteration from what it writes: hand it the step there.
        super().log_trial_result(iteration, trial, {**result, "training_iteration": result[STEP]})


def load_tensorboardx() -> None:
    """Import tensorboardX as the driver needs it, without torch. tensorboardX imports torch,
    if it is installed, only to accept its tensors where it accepts NumPy's; the driver logs
    plain numbers, and torch took 2 of the 2.5 s of that import, at every sweep's start (the
    driver never trains: grok/tune.py). A driver that already holds torch imports it as usual."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # `import torch` raises ImportError, as if not installed
    try:
        import tensorboardX  # noqa: F401
    except ImportError:  # no TensorBoard: Tune's callback says so itself
        pass
    finally:
        del sys.modules["torch"]
