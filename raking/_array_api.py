"""The only module that imports ``array_api_compat``.

Everything the kernel needs to stay backend-agnostic lives here: the namespace lookup, float
promotion, the device of an array and the conversion of small arrays to NumPy for error messages
and summaries. NumPy, CuPy, PyTorch and array-api-strict arrays are all handled by the same code.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import array_api_compat
import numpy as np

Array: TypeAlias = Any
"""Any array-API array (NumPy, CuPy, PyTorch, array-api-strict)."""

__all__ = [
    "Array",
    "device",
    "get_xp",
    "is_array",
    "is_numpy",
    "on_accelerator",
    "to_float",
    "to_numpy",
]


def get_xp(*arrays: Array) -> Any:
    """Return the array-API namespace shared by ``arrays``.

    Raises
    ------
    TypeError
        If the arrays come from different libraries, or one is not an array at all.
    """
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({type(a).__module__ + "." + type(a).__name__ for a in arrays})
        raise TypeError(
            f"expected arrays of one array library, got {kinds}. Convert every input to the "
            "table's array type (e.g. torch.asarray, numpy.asarray) before calling."
        ) from exc


def is_array(x: object) -> bool:
    """Whether ``x`` is an array of a library that array-api-compat knows."""
    return array_api_compat.is_array_api_obj(x)


def is_numpy(xp: Any) -> bool:
    """Whether ``xp`` is the (wrapped) NumPy namespace."""
    return array_api_compat.is_numpy_namespace(xp)


def device(x: Array) -> Any:
    """The device of ``x`` (``"cpu"`` for NumPy)."""
    return array_api_compat.device(x)


def on_accelerator(x: Array) -> bool:
    """Whether ``x`` lives on an accelerator (a CUDA torch tensor, any CuPy array).

    Reading a scalar of such an array back to the host synchronises the device; the kernel
    uses this to space its convergence checks. Host arrays (NumPy, CPU torch, array-api-strict)
    give ``False``.
    """
    if array_api_compat.is_cupy_array(x):
        return True
    kind = getattr(device(x), "type", "cpu")  # torch.device has .type; host devices do not
    return kind != "cpu"


def to_numpy(x: Array) -> np.ndarray:
    """Copy ``x`` to a NumPy array on the host (for messages and summaries only)."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: float32 holds it exactly
            x = x.float()
        return x.numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_numpy_array(x):
        return np.asarray(x)
    # array-api-strict and other standard libraries on the host: DLPack.
    return np.from_dlpack(x)


def to_float(x: Array) -> float:
    """A 0-d array as a Python float (one host synchronisation; autograd is not involved)."""
    if array_api_compat.is_torch_array(x):
        x = x.detach()
    return float(x)
