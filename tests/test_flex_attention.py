"""attn_implementation: flex_attention (issue 28, 3): gpt-oss's attention with its sinks, exact,
in memory that grows with the length (eager's grows with its square).

transformers applies the sinks after flex attention, from its log-sum-exp: out * exp(lse) /
(exp(lse) + exp(sink)). On the GPU flex attention is compiled; on the CPU torch 2.13 refuses its
backward and transformers refuses sinks (it asks for no log-sum-exp there), so the script trains
with eager on the CPU. To prove the GPU's arithmetic equal to eager here, the test runs
transformers' own flex function with those two CPU guards lifted, uncompiled (the same math
as the compiled kernel), on a tiny GptOss whose sinks matter."""

from __future__ import annotations

import copy
import inspect
import textwrap

import pytest

from conftest import require

require("torch", "transformers")

import torch  # noqa: E402
import torch.nn.attention.flex_attention as torch_flex  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AttentionInterface, GptOssConfig, GptOssForCausalLM  # noqa: E402
from transformers.integrations import flex_attention as hf_flex  # noqa: E402
from transformers.masking_utils import AttentionMaskInterface, flex_attention_mask  # noqa: E402

CPU_GUARD = 'return_lse = query.device.type != "cpu"'


@pytest.fixture(scope="module")
def flex_on_the_cpu():
    """transformers' flex_attention_forward as it runs on a GPU (log-sum-exp returned, sinks
    applied), uncompiled, registered as "flex_cpu_test"; and a variant that drops the sinks."""
    source = textwrap.dedent(inspect.getsource(hf_flex.flex_attention_forward))
    assert CPU_GUARD in source, "transformers' flex attention changed: check its sinks again"
    namespace = dict(vars(hf_flex))
    namespace["compile_friendly_flex_attention"] = lambda q, k, v, training=False, **kw: (
        torch_flex.flex_attention(q, k, v, **kw)
    )
    exec(compile(source.replace(CPU_GUARD, "return_lse = True"), "flex", "exec"), namespace)
    forward = namespace["flex_attention_forward"]

    def without_sinks(module, query, key, value, attention_mask, s_aux=None, **kwargs):
        return forward(module, query, key, value, attention_mask, s_aux=None, **kwargs)

    for name, function in (("flex_cpu_test", forward), ("flex_no_sinks", without_sinks)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, flex_attention_mask)
    validate = torch_flex._validate_device
    torch_flex._validate_device = lambda *args, **kwargs: None  # backward on the CPU: math path
    yield
    torch_flex._validate_device = validate


def tiny_gpt_oss() -> GptOssForCausalLM:
    """Two layers, a sliding-window one and a full one, grouped-query heads, sinks of +-2."""
    torch.manual_seed(0)
    config = GptOssConfig(
        vocab_size=500, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=16, pad_token_id=0,
        layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=False,
    )  # fmt: skip
    model = GptOssForCausalLM(config)
    with torch.no_grad():  # initialised near 0, the sinks would hardly matter
        for layer in model.model.layers:
            layer.self_attn.sinks.copy_(torch.randn(config.num_attention_heads) * 1.5)
    return model.train()


def logits_and_gradients(model, attention: str, ids, mask):
    model = copy.deepcopy(model)
    model.set_attn_implementation(attention)
    logits = model(input_ids=ids, attention_mask=mask).logits
    labels = ids.masked_fill(mask == 0, -100)[:, 1:]
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), reduction="sum")
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach()[mask.bool()], grads


@pytest.mark.parametrize("side", ["right", "left"])
def test_flex_attention_with_sinks_equals_eager_values_and_gradients(flex_on_the_cpu, side):
    """Rows longer than the sliding window, padded on either side: the same logits and the same
    gradient of every weight, the sinks' included, within float32 rounding."""
    model = tiny_gpt_oss()
    lengths, longest = (40, 28), 40
    ids = torch.randint(1, 500, (2, longest), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, longest, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1 if side == "right" else 0
        if side == "left":
            mask[row, longest - n :] = 1
    ids = ids.masked_fill(mask == 0, 0)
    eager, eager_grads = logits_and_gradients(model, "eager", ids, mask)
    flex, flex_grads = logits_and_gradients(model, "flex_cpu_test", ids, mask)
    assert flex_grads.keys() == eager_grads.keys()
    assert any(name.endswith("sinks") for name in flex_grads)
    scale = max(g.abs().max().item() for g in eager_grads.values())
    assert (flex - eager).abs().max().item() < 1e-5
    for name, grad in eager_grads.items():
        assert (flex_grads[name] - grad).abs().max().item() < 1e-5 * scale, name
    # the sinks matter here: flex attention without them is far off (the check can fail)
    unsunk, _ = logits_and_gradients(model, "flex_no_sinks", ids, mask)
    assert (unsunk - eager).abs().max().item() > 0.05
