"""The views: a report becomes one neutral panel document, then text, HTML or ipywidgets.

:mod:`.registry` finds the panel builder of a report type (one ``*_panel`` module per report,
with :mod:`.document`'s blocks); :mod:`.text`, :mod:`.html` and :mod:`.widget` render any panel
(only :mod:`.widget` imports ipywidgets); :mod:`.display` picks the views for the display mode
and registers itself as the engine's presenter when imported.
"""
