"""Folders for files turbokv keeps between runs: the assembled demo model and calibrated key centers."""

import os
from pathlib import Path
from typing import Optional


def cache_dir() -> Path:
    """Return turbokv's cache folder.

    ``$TURBOKV_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/turbokv``, else
    ``~/.cache/turbokv``.
    """
    override = os.environ.get("TURBOKV_CACHE_DIR")
    if override:
        return Path(override).expanduser()

    xdg_cache_home = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg_cache_home).expanduser() if xdg_cache_home else Path.home() / ".cache"
    return base / "turbokv"


def centers_cache_dir() -> Optional[str]:
    """Return the folder for calibrated key centers, or ``None`` when ``$TURBOKV_NO_CENTERS_CACHE`` is set.

    A TurboQuant cache calibrates its key centers on a short text the first
    time a model file is used, which takes about as long as a 96-token
    prompt. The engine stores them here, keyed by the file's content, so
    later loads of the same file skip that step.
    """
    if os.environ.get("TURBOKV_NO_CENTERS_CACHE"):
        return None
    return str(cache_dir() / "centers")
