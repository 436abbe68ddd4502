"""Small formatting helpers shared by the panel builders."""

from __future__ import annotations

import math
from typing import Any

from tensormagic.engine.naming import format_bytes

#: Rows a panel's table shows at most (the rest are counted: "... and N more").
MAX_ROWS = 40


def fmt_bytes(n: int | None, exact: bool = True) -> str:
    """``1.5 MiB (1,572,864 B)`` style sizes; ``exact=False`` drops the byte count (for tables)."""
    return "-" if n is None else format_bytes(n, exact=exact)


def shown_std(stats: Any, numpy: bool) -> tuple[str, float | None]:
    """The std as the user's own call gives it, with its label: ``np.std``'s population std
    (ddof=0) for NumPy arrays, ``torch.std``'s sample std (ddof=1, what the engine computes) for
    tensors."""
    std = stats.std
    if not numpy:
        return "std (ddof=1, as torch.std)", std
    finite = (stats.sample_size or stats.count) - stats.nan - stats.posinf - stats.neginf  # count leaves masked values out
    if std is not None and finite > 1:
        std = std * math.sqrt((finite - 1) / finite)
    return "std (ddof=0, as np.std)", std


def short_type(name: str) -> str:
    """``torch.nn.Sequential`` for ``torch.nn.modules.container.Sequential`` (and torch.optim's)."""
    for package in ("torch.nn.modules.", "torch.optim."):
        if name.startswith(package) and name.count(".") > package.count("."):
            return package.removesuffix("modules.").rstrip(".") + "." + name.rsplit(".", 1)[1]
    return name


def fmt_number(x: Any) -> str:
    """Numbers as a learner reads them: ints exact, floats to 6 significant digits."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def fmt_shape(shape: list[int] | None) -> str:
    """``(2, 3)`` style shapes; ``()`` for 0-d."""
    if shape is None:
        return "-"
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def yes_no(flag: bool | None) -> str:
    """yes / no / - for optional booleans."""
    return "-" if flag is None else ("yes" if flag else "no")


def truncate(text: str, limit: int = 120) -> str:
    """Cut long user-derived strings so that panels stay small."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
