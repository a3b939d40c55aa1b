"""Request classification: a person's click, a link preview (a "view"), or a bot.

The work happens in the Rust core; see ``rust/shortcore/src/classify.rs`` for the rules and
``DESIGN.md`` for the pipeline. Build one :class:`Classifier` and share it: it is immutable, and
``classify_many`` releases the GIL while it works.

>>> clf = Classifier()
>>> clf.classify("WhatsApp/2.23.20.0 A").reason
'preview:whatsapp'
>>> clf.classify("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36", method="HEAD").reason
'bot:head'
"""

from shortcore._core import CLASSIFIER_HEADERS, Classification, Classifier, UserAgent, parse_user_agent

# Must match `Classifier::DEFAULT_TOO_SOON_SECONDS` in rust/shortcore/src/classify.rs.
DEFAULT_TOO_SOON_SECONDS = 2.0

__all__ = [
    "CLASSIFIER_HEADERS",
    "DEFAULT_TOO_SOON_SECONDS",
    "Classification",
    "Classifier",
    "UserAgent",
    "parse_user_agent",
]
