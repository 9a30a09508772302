"""Escaping for user-controlled strings that reach HTML, Markdown or graph labels.

Item titles, ids and category names come straight from uploaded files, so any of them may hold
``<script>``, ``<img onerror=...>`` or Markdown links. The app shows such strings through
widgets that render plain text where it can (``st.text``, ``st.dataframe``); these helpers cover
the places where text is embedded in markup: Markdown captions, the pyvis graph (whose iframe
runs script with the app's origin) and plot hover labels.
"""

from __future__ import annotations

import html
import re
import unicodedata

#: Characters with a meaning in Streamlit Markdown (CommonMark plus ``$`` for LaTeX and ``:``
#: for emoji / colour directives such as ``:red[...]``).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:=])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HREF = re.compile(r"href", re.IGNORECASE)
_ZERO_WIDTH_SPACE = "\u200b"


def clean_text(value: object, max_length: int | None = None) -> str:
    """``value`` as a single display string without control characters.

    Args:
        value (object): Anything; ``None`` becomes ``""``.
        max_length (int, optional): Truncate to this many characters, ending with ``…``.
            (default: :obj:`None`)
    """
    text = "" if value is None else str(value)
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text))
    if max_length is not None and len(text) > max_length:
        text = text[: max(max_length - 1, 0)] + "…"
    return text


def escape_html(value: object, max_length: int | None = None) -> str:
    """HTML-escape ``value`` (``& < > " '``) after :func:`clean_text`."""
    return html.escape(clean_text(value, max_length), quote=True)


def plot_text(value: object, max_length: int | None = None) -> str:
    """Text for plotly labels, legends and hover templates.

    Plotly renders a few tags in text (``<b>``, ``<br>``, ``<a href=...>``) and decodes only the
    ``&amp;``, ``&lt;``, ``&gt;`` (plus numeric) entities, so exactly ``&``, ``<`` and ``>`` are
    escaped: no tag survives and quotes display as typed.
    """
    return html.escape(clean_text(value, max_length), quote=False)


def escape_markdown(value: object, max_length: int | None = None) -> str:
    """Escape ``value`` for Streamlit Markdown so it renders literally.

    Backslash-escapes every Markdown-significant character and HTML-escapes ``<``/``>``/``&``
    so nothing becomes a link, image, emoji directive, LaTeX or raw HTML. Newlines become spaces
    (a caption is one line).
    """
    text = clean_text(value, max_length).replace("\r", " ").replace("\n", " ")
    text = text.replace("&", "&amp;")
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return text.replace("\\<", "&lt;").replace("\\>", "&gt;")


def graph_label(value: object, max_length: int = 40) -> str:
    """A node label for the pyvis graph: plain text on one line.

    vis-network draws labels on a canvas, which never interprets markup, as long as its
    ``font.multi`` markup modes stay off (:func:`recsys_core.viz.graph_html` leaves them off:
    its ``"html"`` mode parses labels with regular expressions built from the text itself, so
    a ``(`` or ``[`` in a title broke the whole drawing). The page embeds the label through
    Jinja's ``tojson``, which escapes ``<``, ``>``, ``&`` and ``'``, so no string can leave
    its script either. Nothing is escaped here: the canvas shows exactly these characters.
    """
    return clean_text(value, max_length).replace("\r", " ").replace("\n", " ")


def graph_title(value: object, max_length: int = 600) -> str:
    """A hover tooltip for the pyvis graph: fully HTML-escaped, with "href" neutralised.

    pyvis switches its template to raw ``innerHTML`` tooltips as soon as any node title
    contains the substring ``"href"``. Escaping already makes that harmless; breaking the
    substring with a zero-width space also keeps the safer default tooltip path in use.
    :func:`recsys_core.viz.graph_html` turns these escaped strings into text-only DOM nodes.
    """
    return _HREF.sub(
        lambda m: m.group(0)[:3] + _ZERO_WIDTH_SPACE + m.group(0)[3:],
        escape_html(value, max_length),
    )
