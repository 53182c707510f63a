"""Training hyper-parameters: the loop settings every trainer has, and ``--set`` overrides."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dubber.errors import UsageError


@dataclass(frozen=True)
class LoopConfig:
    """The loop settings every trainer has (each trainer's config extends these)."""

    steps: int = 1000  # optimisation steps in all (a resumed run continues up to this)
    batch_size: int = 8  # samples per step
    lr: float = 2e-4  # Adam learning rate
    checkpoint_every: int = 100  # steps between checkpoints
    val_every: int = 0  # steps per "epoch" (validation); 0 = one pass over the train frames
    max_minutes: float = 0.0  # stop early after this much wall time (0 = no limit)
    seed: int = 0  # seeds the networks' initialisation and every step's batch
    precision: str = "fp16"  # fp16: autocast + grad scaler on CUDA, fp32 on the CPU;
    # bf16: autocast on CUDA and CPU; fp32: none
    keep_best: bool = False  # publish the network of the best validation (the trainer's
    # ``best_figure``) instead of the last: early stopping for a small corpus that overfits



def _truth(text: str) -> bool:
    """``--set k=v`` for a yes/no setting; a typo is an error, not a silent no."""
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def override(hp: Any, values: dict[str, Any]) -> Any:
    """``hp`` with ``values`` (strings from ``--set k=v`` are converted to the field type).

    Raises:
        UsageError: unknown field or a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(hp)}
    changes = {}
    for k, v in values.items():
        if v is None:
            continue
        k = k.replace("-", "_")
        if k not in fields:
            raise UsageError(
                f"unknown training setting {k!r} for {type(hp).__name__}; "
                f"known: {', '.join(sorted(fields))}"
            )
        changes[k] = setting_value(k, v, getattr(hp, k))
    return dataclasses.replace(hp, **changes)


def setting_value(name: str, value: Any, current: Any) -> Any:
    """A training setting's new ``value`` (a string from ``--set k=v`` is converted to the
    type of its ``current`` value).

    Raises:
        UsageError: a value of the wrong type, or a number that is not finite.
    """
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = _truth(value) if isinstance(current, bool) else type(current)(value)
        except ValueError:
            raise UsageError(
                f"training setting {name} must be {type(current).__name__}, got {value!r}"
            ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"training setting {name} must be a finite number, got {value!r}")
    return value
