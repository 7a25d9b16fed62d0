"""Greedy generation stays sensible with every KV cache type on both models.

The check is a fact the continuation must contain, not a recorded string:
exact continuations legitimately change wherever two candidate tokens are
nearly tied, while the fact survives every cache type (measured: all five
types on both models continue with " Paris, France").
"""

import pytest

import turbokv

PROMPT = "The Eiffel Tower is located in the city of"


@pytest.mark.parametrize("kv_type", turbokv.KV_TYPES)
@pytest.mark.parametrize("model_fixture", ["gemma_path", "smollm_path"])
def test_greedy_continuation_names_paris(request, model_fixture, kv_type):
    path = request.getfixturevalue(model_fixture)
    model = turbokv.Model(path, n_ctx=128, n_threads=2, cache_type_k=kv_type, cache_type_v=kv_type)

    result = model.generate_tokens(PROMPT, max_tokens=8, temperature=0.0)

    assert "Paris" in result.text, f"{kv_type}: {result.text!r}"
    assert result.kv_bytes == model.kv_cache_bytes()
