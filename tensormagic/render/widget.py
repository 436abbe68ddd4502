"""Render a :class:`~tensormagic.render.document.Panel` as an ipywidgets tree.

The only module of tensormagic that imports ipywidgets.  The tree stays shallow: a VBox holding
the headline and a Tab whose pages are HTML widgets (and, for an :class:`Action`, a dropdown and
a button that rebuild the panel in place).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from tensormagic.render import html
from tensormagic.render.document import Action, Block, Panel


def _page(panel_box: widgets.VBox, section_blocks: Sequence[Block]) -> widgets.Widget:
    children: list[widgets.Widget] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            children.append(widgets.HTML("<div class=\"tensormagic\">" + "".join(pending) + "</div>"))
            pending.clear()

    for block in section_blocks:
        if isinstance(block, Action):
            flush()
            children.append(_action(panel_box, block))
        else:
            pending.append(html.render_block(block))
    flush()
    return children[0] if len(children) == 1 else widgets.VBox(children)


def _action(panel_box: widgets.VBox, action: Action) -> widgets.Widget:
    picker = widgets.Dropdown(options=action.choices, description=action.label)
    button = widgets.Button(description=action.button, button_style="primary")
    status = widgets.HTML()

    def on_click(_: widgets.Button) -> None:
        try:
            new_panel = action.run(picker.value)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never raised into the frontend
            # inside .tensormagic, so that STYLE's theme-aware error colour applies
            status.value = f"<div class=\"tensormagic\"><span class=\"tm-error\">✘ {html.e(exc)}</span></div>"
            return
        fill(panel_box, new_panel)

    button.on_click(on_click)
    return widgets.HBox([picker, button, status])


def fill(box: widgets.VBox, panel: Panel) -> None:
    """(Re)build ``box``'s children from ``panel``."""
    header = widgets.HTML(
        html.STYLE
        + f"<div class=\"tensormagic\"><b>{html.e(panel.title)}</b> · "
        + f"<span class=\"tm-{html.e(panel.headline_level)}\">{html.e(panel.headline)}</span></div>"
    )
    tabs = widgets.Tab(children=[_page(box, s.blocks) for s in panel.sections])
    tabs.titles = tuple(s.title for s in panel.sections)
    box.children = (header, tabs)


def render_widget(panel: Panel) -> widgets.VBox:
    """The widget tree of a panel."""
    box = widgets.VBox(layout=widgets.Layout(max_width="1000px"))
    box.add_class("tensormagic-panel")
    fill(box, panel)
    return box


def summary_widget(header_html: str, panel: Panel, title: str = "%tensorinfo panel") -> widgets.VBox:
    """Automatic display's widget: the line and picture, and a closed accordion that builds
    the full panel's widget the first time it is opened (a displayed tensor costs no tabs
    until someone looks)."""
    box = widgets.VBox(layout=widgets.Layout(max_width="1000px"))
    box.add_class("tensormagic-auto")
    body = widgets.VBox()
    accordion = widgets.Accordion(children=[body], titles=(title,), selected_index=None)

    def opened(change: dict[str, Any]) -> None:
        if change["new"] == 0 and not body.children:
            body.children = (render_widget(panel),)

    accordion.observe(opened, names="selected_index")
    box.children = (widgets.HTML(html.STYLE + f"<div class=\"tensormagic tm-auto\">{header_html}</div>"), accordion)
    return box
