"""Links in SMS text: finding them and rewriting a message with each recipient's short links.

``find_links`` gives ``(start, end, link)`` in characters. A ``MessageTemplate`` is built once per
campaign text and renders each recipient's message, with the segments before and after shortening.
``scheme`` is ``"keep"`` (``https://ul.example/7fQ2xZa``), ``"drop"`` (``ul.example/7fQ2xZa``) or
``"fit"`` (drop ``https://`` only where that brings the message to fewer segments).
"""

from shortcore._core import MessageTemplate, RenderedMessage, find_links, rewrite

__all__ = ["MessageTemplate", "RenderedMessage", "find_links", "rewrite"]
