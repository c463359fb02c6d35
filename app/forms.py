"""The "new run" form, generated from the options dataclasses (:mod:`workbench.config`): one widget per option,
its label, help, default and range taken from the option. Nothing about any method is written here."""
from __future__ import annotations

from typing import Any

import streamlit as st

from workbench.config import Spec


def widget(s: Spec, column) -> Any:
    """The widget of one option in ``column``; returns its value (``None``: the option's automatic default)."""
    key, label = f"new_{s.name}", s.name.replace("_", " ")
    help = s.help + (f" · allowed: {s.allowed()}" if s.type is not bool else "")
    if s.choices:
        return column.selectbox(label, s.choices, index=list(s.choices).index(s.default), key=key, help=help)
    if s.type is bool:
        return column.checkbox(label, value=s.default, key=key, help=help)
    if s.type is str:
        text = column.text_input(label, "" if s.default is None else s.default, key=key, help=help,
                                 placeholder="automatic" if s.optional else "")
        return text.strip() or (None if s.optional else s.default)
    low = s.ge if s.ge is not None else (s.gt + (1 if s.type is int else 0) if s.gt is not None else None)
    if s.type is float and s.gt is not None and s.ge is None:
        low = None  # a strict bound: left to validation, which names it
    cast = s.type
    return column.number_input(label, min_value=None if low is None else cast(low),
                               max_value=None if s.le is None else cast(s.le),
                               value=None if s.default is None else cast(s.default), key=key, help=help,
                               step=1 if cast is int else None, format=None if cast is int else "%g",
                               placeholder="automatic" if s.optional else None)


def option_widgets(specs: list[Spec], per_row: int = 4) -> dict[str, Any]:
    """Widgets for ``specs`` in rows of ``per_row``; returns ``{name: value}``."""
    values = {}
    for start in range(0, len(specs), per_row):
        row = specs[start:start + per_row]
        for s, column in zip(row, st.columns(per_row)):
            values[s.name] = widget(s, column)
    return values
