"""Recipients' phone numbers, validated and normalised to E.164.

``PhoneNormalizer(default_region)`` reads national numbers in that region; ``normalize`` raises
``InvalidArgumentError`` with the reason, ``normalize_many`` returns ``(e164, reason)`` pairs and
runs on every core without the GIL. The rules are libphonenumber's (the Rust ``phonenumber``
crate), the same as Python's ``phonenumbers`` at several times its speed.
"""

from shortcore._core import PhoneNormalizer

__all__ = ["PhoneNormalizer"]
