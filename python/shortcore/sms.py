"""SMS encoding (GSM-7 or UCS-2), length in the encoding's units, and segment count.

``measure(text)`` returns a ``MessageSize`` with ``.encoding``, ``.characters``, ``.units`` and
``.segments``; see rust/shortcore/src/sms.rs for the rules (3GPP TS 23.038, 160/153 and 70/67).
"""

from shortcore._core import MessageSize, measure

__all__ = ["MessageSize", "measure"]
