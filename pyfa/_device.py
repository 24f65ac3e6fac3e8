"""Checking a torch device before anything is built on it (torch is imported only when called)."""

from __future__ import annotations


def check_torch_device(device, what: str = ""):
    """``torch.device(device)`` if torch can put tensors there; a ValueError (its message prefixed
    with ``what: `` if given) otherwise: an unparsable name, CUDA on a build or machine without it,
    or a device that fails."""
    import torch

    what = f"{what}: " if what else ""

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{what}device {device!r} is not a torch device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{what}device {device!r}: CUDA is not available here (torch.cuda.is_available() is "
            "False); use device 'cpu'"
        )
    if dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError) as e:
            raise ValueError(f"{what}device {device!r} cannot be used: {e}") from None
    return dev
