"""The engine: pure torch/NumPy code that finds the facts and returns them as report dataclasses.

One package per magic (:mod:`.tensorinfo`, :mod:`.layers` for ``%tensorinfo model --input x``,
:mod:`.autograd`, :mod:`.todevice`) and the helpers they share (:mod:`.naming`, :mod:`.namespace`,
:mod:`.preview`, :mod:`.report`).  Nothing here imports IPython, ipywidgets or
:mod:`tensormagic.render`, and reports hold plain values only (never a tensor).
"""
