"""Saving and loading beyond Stable-Baselines3's own ``save``/``load``: a save that never destroys the previous one, and
optimizer states that load whichever parameter storage (flat or per tensor) saved them."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeGuard

import torch as th


def save_atomically(save: Callable[..., None], path: str | os.PathLike | Any, **kwargs: Any) -> None:
    """
    ``save(path, **kwargs)`` (SB3's ``BaseAlgorithm.save``) into a temporary file in the same folder, then renamed over
    the target: a crash or a full disk during the write leaves the previous file at the target intact, and no temporary
    file behind. A file object is written in place, as SB3 does.

    :param save: the saving function (it appends nothing to a path with a suffix).
    :param path: the file (``.zip`` is appended when it has no suffix, as SB3 does), or a file object.
    :param kwargs: passed to ``save``.
    :raises OSError: when the write or the rename fails (the previous file is then unchanged).
    """
    if not isinstance(path, (str, os.PathLike)):
        save(path, **kwargs)
        return
    target = Path(path) if Path(path).suffix else Path(path).with_suffix(".zip")
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(descriptor)
    try:
        save(temporary, **kwargs)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def is_optimizer_state(state: Any) -> TypeGuard[dict[str, Any]]:
    """Whether ``state`` has the form of ``torch.optim.Optimizer.state_dict()`` (a dict with ``state`` and
    ``param_groups``)."""
    return isinstance(state, dict) and {"state", "param_groups"} <= set(state)


def regroup_optimizer_state(state_dict: dict[str, Any], param_groups: list[list[th.Tensor]]) -> dict[str, Any]:
    """
    An optimizer state dict saved with one tensor per parameter regrouped for an optimizer over flat tensors (one
    per group), or the reverse, so that a model saved with either storage loads with the other. Groups are matched
    in order; each per-element state tensor (e.g. Adam's moments) is split or concatenated, scalars (``step``) copied.
    A state dict that already matches is returned unchanged.

    :param state_dict: the saved ``optimizer.state_dict()``.
    :param param_groups: the parameters of each group of the optimizer it is for (e.g. ``[g["params"] for g in
        optimizer.param_groups]``).
    :return: a state dict for that optimizer.
    :raises ValueError: for a ``state_dict`` that is not an optimizer's, or whose groups or sizes do not correspond.
    """
    if not is_optimizer_state(state_dict):
        found = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise ValueError(f"'policy.optimizer' must be an optimizer state dict (with 'state' and 'param_groups'), got {found}")
    saved_groups, current_groups = state_dict["param_groups"], [{"params": list(group)} for group in param_groups]
    if [len(g["params"]) for g in saved_groups] == [len(g["params"]) for g in current_groups]:
        return state_dict
    if len(saved_groups) != len(current_groups):
        raise ValueError(f"optimizer state has {len(saved_groups)} parameter groups, the optimizer {len(current_groups)}")
    new_state: dict[int, dict[str, Any]] = {}
    new_groups = []
    index = 0
    for saved, current in zip(saved_groups, current_groups, strict=True):
        sizes = [p.numel() for p in current["params"]]
        shapes = [p.shape for p in current["params"]]
        entries = [state_dict["state"].get(i) for i in saved["params"]]
        if all(entry is None for entry in entries):
            pieces: list[dict[str, Any] | None] = [None] * len(sizes)
        else:
            keys = next(entry for entry in entries if entry is not None)
            flat: dict[str, Any] = {}
            for key, value in keys.items():
                if isinstance(value, th.Tensor) and value.dim() > 0:
                    flat[key] = th.cat([entry[key].reshape(-1) for entry in entries])
                else:
                    flat[key] = value
            total = sum(sizes)
            if any(isinstance(v, th.Tensor) and v.dim() > 0 and v.numel() != total for v in flat.values()):
                raise ValueError("optimizer state does not match the parameters' sizes")
            pieces = []
            offset = 0
            for size, shape in zip(sizes, shapes, strict=True):
                pieces.append(
                    {
                        key: value[offset : offset + size].reshape(shape).clone()
                        if isinstance(value, th.Tensor) and value.dim() > 0
                        else (value.clone() if isinstance(value, th.Tensor) else value)
                        for key, value in flat.items()
                    }
                )
                offset += size
        ids = list(range(index, index + len(sizes)))
        for i, piece in zip(ids, pieces, strict=True):
            if piece is not None:
                new_state[i] = piece
        new_groups.append({**saved, "params": ids})
        index += len(sizes)
    return {"state": new_state, "param_groups": new_groups}
