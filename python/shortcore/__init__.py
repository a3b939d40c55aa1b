"""shortcore: a self-hosted SMS link-tracking engine.

The hot paths live in the Rust core, ``shortcore._core``; the modules here give them their
public Python names and add the services around them.
"""

from shortcore._core import InvalidArgumentError, ShortcoreError, __version__

__all__ = ["InvalidArgumentError", "ShortcoreError", "__version__"]
