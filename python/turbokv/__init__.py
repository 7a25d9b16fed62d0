"""Run GGUF language models on the CPU with a TurboQuant-compressed KV cache.

>>> import turbokv
>>> model = turbokv.Model(turbokv.demo_model_path())
>>> model.generate("The capital of France is", max_tokens=16, temperature=0)
"""

from turbokv._turbokv import (
    KV_TYPES,
    ContextOverflowError,
    GGUFFormatError,
    TurbokvError,
    UnsupportedModelError,
    __version__,
)
from turbokv.chat import ChatCompletion, ChatSession, ChatTemplate
from turbokv.demo import demo_model_path
from turbokv.model import Generation, GenerationResult, Model, PerplexityResult

__all__ = [
    "KV_TYPES",
    "ChatCompletion",
    "ChatSession",
    "ChatTemplate",
    "ContextOverflowError",
    "GGUFFormatError",
    "Generation",
    "GenerationResult",
    "Model",
    "PerplexityResult",
    "TurbokvError",
    "UnsupportedModelError",
    "__version__",
    "demo_model_path",
]
