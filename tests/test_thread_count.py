"""Logits must not depend on the number of worker threads.

The kernels keep each output's summation order fixed, and the worker pool
only decides which thread computes which rows or heads. So every thread
count must give bit-identical logits, for prompts (batched products and
parallel activation encoding) and for single-token decode steps.
"""

import numpy as np
import pytest

from turbokv import _turbokv

PROMPT = (
    "The worker pool splits each matrix product into tasks over output rows. "
    "Every task writes its own rows, so the result is the same for any split."
)
THREAD_COUNTS = [1, 2, 3]
DECODE_STEPS = 4


def logits_by_step(model, cache_type):
    """Returns the prompt's logits rows, then each greedy decode step's row."""
    session = _turbokv.Session(model, 256, cache_type, cache_type)
    prompt = model.tokenize(PROMPT)
    rows = [session.eval(prompt, all_logits=True)]
    token = int(rows[-1][-1].argmax())
    for _ in range(DECODE_STEPS):
        rows.append(session.eval([token]))
        token = int(rows[-1].argmax())
    return rows


@pytest.mark.parametrize("model_name", ["smollm", "gemma"])
@pytest.mark.parametrize("cache_type", ["fp32", "turbo_kv_4b"])
def test_logits_identical_across_thread_counts(request, model_name, cache_type):
    path = str(request.getfixturevalue(f"{model_name}_path"))
    expected = logits_by_step(_turbokv.Model(path, THREAD_COUNTS[0]), cache_type)
    assert len(_turbokv.Model(path, 1).tokenize(PROMPT)) > 16, "the prompt must be long enough to split encoding"

    for n_threads in THREAD_COUNTS[1:]:
        actual = logits_by_step(_turbokv.Model(path, n_threads), cache_type)
        for step, (want, got) in enumerate(zip(expected, actual)):
            assert np.array_equal(want, got), f"{n_threads} threads: step {step} logits differ from 1 thread"
