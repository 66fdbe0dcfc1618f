"""The device a command, a run or a loaded model works on: ``auto``, ``cpu``, ``cuda``,
``cuda:N`` or ``mps``, checked against what this machine has."""

from __future__ import annotations

import torch

from rnnkit.config_checks import ConfigError

__all__ = ["pick_device"]


def pick_device(name: str, key: str = "train.device") -> torch.device:
    """``auto``: CUDA when present, else CPU; a device this machine lacks is a
    :class:`ConfigError` naming ``key`` (the config key or option that chose it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = torch.device("meta")
    if device.type not in ("cpu", "cuda", "mps"):  # xpu, meta, ...: not what rnnkit runs on
        raise ConfigError(f"{key}={name}: use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(
                f"{key}={name}: this machine has no CUDA GPU that torch "
                f"{torch.__version__} can use; use auto or cpu"
            )
        if device.index is not None and device.index >= n:
            raise ConfigError(f"{key}={name}: this machine has {n} GPU(s), cuda:0..{n - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={name}: MPS is not available here; use auto or cpu")
    return device
