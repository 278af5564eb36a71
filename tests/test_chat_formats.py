"""Chat formats byte for byte: format_conversation in each emitted script renders exactly what the
model's official chat template renders (add_generation_prompt=False) for the same conversation.

The expected strings were rendered from the official templates, with jinja2 settings as in
transformers' apply_chat_template, and are written out here; the tests read nothing else.
Templates matched (source; see the closing note of the chat-format issue for details):
- openai/gpt-oss-20b: the model repository's chat_template.jinja (sha256 a4c9919c...), date 2025-01-01.
- Qwen/Qwen3-8B: tokenizer_config.json chat_template at HF revision 895c8d17 (the hybrid-thinking
  template shared by the Qwen3 dense and April-2025 MoE models); release-day text renders the same.
- Qwen/Qwen3-Coder-30B-A3B-Instruct: chat_template.jinja as copied in llama.cpp models/templates
  (Qwen3-Coder.jinja); no thinking block.
- meta-llama/Llama-2-7b-chat-hf: tokenizer_config.json chat_template (one line).
- meta-llama/Llama-3.1-8B-Instruct: tokenizer_config.json chat_template (date_string default 26 Jul 2024).
- mistralai/Mistral-7B-Instruct-v0.3: tokenizer_config.json chat_template (tool-use version).
  One deliberate difference: rendered for a conversation that ends with the reply, this template
  drops the system message; mhgen puts it where the same template puts it at inference, so those
  expected strings are the template's own inference prompt (add_generation_prompt=True on all but
  the reply) followed by " " + reply + "</s>".
"""

from __future__ import annotations

import copy

import pytest

from conftest import emitted, write_config
from mhgen.pipeline import compile_config

CONVERSATIONS = {
    "basic": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 equals 4."},
    ],
    "no_system": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
    ],
    "empty_system": [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
    ],
    "multi_turn": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Green."},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "A"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "C"},
        {"role": "assistant", "content": "D"},
        {"role": "user", "content": "E"},
        {"role": "assistant", "content": "F"},
    ],
    "unicode": [
        {"role": "system", "content": "Réponds en français. 日本語もOK."},
        {"role": "user", "content": "Grüße, 世界 🌍 — ça va?"},
        {"role": "assistant", "content": "Très bien ✓ 🙂"},
    ],
    "newlines_brackets": [
        {"role": "system", "content": "Line one.\nLine two <b>bold</b>."},
        {"role": "user", "content": "Is a < b > c?\n\n```python\nx = {'k': [1, 2]}\n```"},
        {"role": "assistant", "content": 'Yes: <tag attr="v">\nsecond line\n\nthird & last.'},
    ],
    "whitespace": [
        {"role": "system", "content": "  padded system  "},
        {"role": "user", "content": "\n  leading and trailing  \n"},
        {"role": "assistant", "content": "  spaced answer \n"},
    ],
    "lookalike_tokens": [
        {"role": "user", "content": "Explain [INST] and <s> and <|im_start|> please"},
        {"role": "assistant", "content": "They are markers: [/INST] </s> <|im_end|>."},
    ],
    "quotes_backslashes": [
        {"role": "system", "content": "Use \"quotes\" and 'apostrophes' and \\backslashes\\."},
        {"role": "user", "content": "Path C:\\temp\\new? Tab:\there."},
        {"role": "assistant", "content": '"""triple""" and {{ braces }} {% raw %}'},
    ],
    "long_multi_turn_system": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "u3"},
        {"role": "assistant", "content": "a3"},
    ],
    "assistant_reasoning": [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A", "thinking": "think hard"},
    ],
    "reasoning_in_earlier_turn": [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1", "thinking": "r1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2", "thinking": "r2"},
    ],
    "developer_role": [
        {"role": "developer", "content": "Developer instructions here."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ],
}

EXPECTED = {
    "openai/gpt-oss-20b": {
        "basic": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nYou are a helpful assistant.\n\n<|end|><|start|>user<|message|>What is 2+2?<|end|><|start|>assistant<|channel|>final<|message|>2+2 equals 4.<|return|>",
        "no_system": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>Hello<|end|><|start|>assistant<|channel|>final<|message|>Hi! How can I help?<|return|>",
        "empty_system": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>Hello<|end|><|start|>assistant<|channel|>final<|message|>Hi!<|return|>",
        "multi_turn": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nBe brief.\n\n<|end|><|start|>user<|message|>Name a color.<|end|><|start|>assistant<|channel|>final<|message|>Blue.<|end|><|start|>user<|message|>Another?<|end|><|start|>assistant<|channel|>final<|message|>Green.<|return|>",
        "multi_turn_no_system": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>A<|end|><|start|>assistant<|channel|>final<|message|>B<|end|><|start|>user<|message|>C<|end|><|start|>assistant<|channel|>final<|message|>D<|end|><|start|>user<|message|>E<|end|><|start|>assistant<|channel|>final<|message|>F<|return|>",
        "unicode": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nRéponds en français. 日本語もOK.\n\n<|end|><|start|>user<|message|>Grüße, 世界 🌍 — ça va?<|end|><|start|>assistant<|channel|>final<|message|>Très bien ✓ 🙂<|return|>",
        "newlines_brackets": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nLine one.\nLine two <b>bold</b>.\n\n<|end|><|start|>user<|message|>Is a < b > c?\n\n```python\nx = {'k': [1, 2]}\n```<|end|><|start|>assistant<|channel|>final<|message|>Yes: <tag attr=\"v\">\nsecond line\n\nthird & last.<|return|>",
        "whitespace": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\n  padded system  \n\n<|end|><|start|>user<|message|>\n  leading and trailing  \n<|end|><|start|>assistant<|channel|>final<|message|>  spaced answer \n<|return|>",
        "lookalike_tokens": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>Explain [INST] and <s> and <|im_start|> please<|end|><|start|>assistant<|channel|>final<|message|>They are markers: [/INST] </s> <|im_end|>.<|return|>",
        "quotes_backslashes": '<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nUse "quotes" and \'apostrophes\' and \\backslashes\\.\n\n<|end|><|start|>user<|message|>Path C:\\temp\\new? Tab:\there.<|end|><|start|>assistant<|channel|>final<|message|>"""triple""" and {{ braces }} {% raw %}<|return|>',
        "long_multi_turn_system": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nS\n\n<|end|><|start|>user<|message|>u1<|end|><|start|>assistant<|channel|>final<|message|>a1<|end|><|start|>user<|message|>u2<|end|><|start|>assistant<|channel|>final<|message|>a2<|end|><|start|>user<|message|>u3<|end|><|start|>assistant<|channel|>final<|message|>a3<|return|>",
        "assistant_reasoning": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>Q<|end|><|start|>assistant<|channel|>analysis<|message|>think hard<|end|><|start|>assistant<|channel|>final<|message|>A<|return|>",
        "reasoning_in_earlier_turn": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>Q1<|end|><|start|>assistant<|channel|>final<|message|>A1<|end|><|start|>user<|message|>Q2<|end|><|start|>assistant<|channel|>analysis<|message|>r2<|end|><|start|>assistant<|channel|>final<|message|>A2<|return|>",
        "developer_role": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nDeveloper instructions here.\n\n<|end|><|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>Hello.<|return|>",
    },
    "Qwen/Qwen3-8B": {
        "basic": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n2+2 equals 4.<|im_end|>\n",
        "no_system": "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi! How can I help?<|im_end|>\n",
        "empty_system": "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi!<|im_end|>\n",
        "multi_turn": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nGreen.<|im_end|>\n",
        "multi_turn_no_system": "<|im_start|>user\nA<|im_end|>\n<|im_start|>assistant\nB<|im_end|>\n<|im_start|>user\nC<|im_end|>\n<|im_start|>assistant\nD<|im_end|>\n<|im_start|>user\nE<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nF<|im_end|>\n",
        "unicode": "<|im_start|>system\nRéponds en français. 日本語もOK.<|im_end|>\n<|im_start|>user\nGrüße, 世界 🌍 — ça va?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nTrès bien ✓ 🙂<|im_end|>\n",
        "newlines_brackets": "<|im_start|>system\nLine one.\nLine two <b>bold</b>.<|im_end|>\n<|im_start|>user\nIs a < b > c?\n\n```python\nx = {'k': [1, 2]}\n```<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nYes: <tag attr=\"v\">\nsecond line\n\nthird & last.<|im_end|>\n",
        "whitespace": "<|im_start|>system\n  padded system  <|im_end|>\n<|im_start|>user\n\n  leading and trailing  \n<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n  spaced answer \n<|im_end|>\n",
        "lookalike_tokens": "<|im_start|>user\nExplain [INST] and <s> and <|im_start|> please<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nThey are markers: [/INST] </s> <|im_end|>.<|im_end|>\n",
        "quotes_backslashes": '<|im_start|>system\nUse "quotes" and \'apostrophes\' and \\backslashes\\.<|im_end|>\n<|im_start|>user\nPath C:\\temp\\new? Tab:\there.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"""triple""" and {{ braces }} {% raw %}<|im_end|>\n',
        "long_multi_turn_system": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nu1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\nu2<|im_end|>\n<|im_start|>assistant\na2<|im_end|>\n<|im_start|>user\nu3<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na3<|im_end|>\n",
        "assistant_reasoning": "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nthink hard\n</think>\n\nA<|im_end|>\n",
        "reasoning_in_earlier_turn": "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2<|im_end|>\n",
    },
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": {
        "basic": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n2+2 equals 4.<|im_end|>\n",
        "no_system": "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi! How can I help?<|im_end|>\n",
        "empty_system": "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n",
        "multi_turn": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\nGreen.<|im_end|>\n",
        "multi_turn_no_system": "<|im_start|>user\nA<|im_end|>\n<|im_start|>assistant\nB<|im_end|>\n<|im_start|>user\nC<|im_end|>\n<|im_start|>assistant\nD<|im_end|>\n<|im_start|>user\nE<|im_end|>\n<|im_start|>assistant\nF<|im_end|>\n",
        "unicode": "<|im_start|>system\nRéponds en français. 日本語もOK.<|im_end|>\n<|im_start|>user\nGrüße, 世界 🌍 — ça va?<|im_end|>\n<|im_start|>assistant\nTrès bien ✓ 🙂<|im_end|>\n",
        "newlines_brackets": "<|im_start|>system\nLine one.\nLine two <b>bold</b>.<|im_end|>\n<|im_start|>user\nIs a < b > c?\n\n```python\nx = {'k': [1, 2]}\n```<|im_end|>\n<|im_start|>assistant\nYes: <tag attr=\"v\">\nsecond line\n\nthird & last.<|im_end|>\n",
        "whitespace": "<|im_start|>system\n  padded system  <|im_end|>\n<|im_start|>user\n\n  leading and trailing  \n<|im_end|>\n<|im_start|>assistant\n  spaced answer \n<|im_end|>\n",
        "lookalike_tokens": "<|im_start|>user\nExplain [INST] and <s> and <|im_start|> please<|im_end|>\n<|im_start|>assistant\nThey are markers: [/INST] </s> <|im_end|>.<|im_end|>\n",
        "quotes_backslashes": '<|im_start|>system\nUse "quotes" and \'apostrophes\' and \\backslashes\\.<|im_end|>\n<|im_start|>user\nPath C:\\temp\\new? Tab:\there.<|im_end|>\n<|im_start|>assistant\n"""triple""" and {{ braces }} {% raw %}<|im_end|>\n',
        "long_multi_turn_system": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nu1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\nu2<|im_end|>\n<|im_start|>assistant\na2<|im_end|>\n<|im_start|>user\nu3<|im_end|>\n<|im_start|>assistant\na3<|im_end|>\n",
        "assistant_reasoning": "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n",
        "reasoning_in_earlier_turn": "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n",
    },
    "meta-llama/Llama-2-7b-chat-hf": {
        "basic": "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nWhat is 2+2? [/INST] 2+2 equals 4. </s>",
        "no_system": "<s>[INST] Hello [/INST] Hi! How can I help? </s>",
        "empty_system": "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nHello [/INST] Hi! </s>",
        "multi_turn": "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nName a color. [/INST] Blue. </s><s>[INST] Another? [/INST] Green. </s>",
        "multi_turn_no_system": "<s>[INST] A [/INST] B </s><s>[INST] C [/INST] D </s><s>[INST] E [/INST] F </s>",
        "unicode": "<s>[INST] <<SYS>>\nRéponds en français. 日本語もOK.\n<</SYS>>\n\nGrüße, 世界 🌍 — ça va? [/INST] Très bien ✓ 🙂 </s>",
        "newlines_brackets": "<s>[INST] <<SYS>>\nLine one.\nLine two <b>bold</b>.\n<</SYS>>\n\nIs a < b > c?\n\n```python\nx = {'k': [1, 2]}\n``` [/INST] Yes: <tag attr=\"v\">\nsecond line\n\nthird & last. </s>",
        "whitespace": "<s>[INST] <<SYS>>\n  padded system  \n<</SYS>>\n\n\n  leading and trailing [/INST] spaced answer </s>",
        "lookalike_tokens": "<s>[INST] Explain [INST] and <s> and <|im_start|> please [/INST] They are markers: [/INST] </s> <|im_end|>. </s>",
        "quotes_backslashes": '<s>[INST] <<SYS>>\nUse "quotes" and \'apostrophes\' and \\backslashes\\.\n<</SYS>>\n\nPath C:\\temp\\new? Tab:\there. [/INST] """triple""" and {{ braces }} {% raw %} </s>',
        "long_multi_turn_system": "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nu1 [/INST] a1 </s><s>[INST] u2 [/INST] a2 </s><s>[INST] u3 [/INST] a3 </s>",
        "assistant_reasoning": "<s>[INST] Q [/INST] A </s>",
        "reasoning_in_earlier_turn": "<s>[INST] Q1 [/INST] A1 </s><s>[INST] Q2 [/INST] A2 </s>",
    },
    "meta-llama/Llama-3.1-8B-Instruct": {
        "basic": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n2+2 equals 4.<|eot_id|>",
        "no_system": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>",
        "empty_system": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi!<|eot_id|>",
        "multi_turn": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nBlue.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nGreen.<|eot_id|>",
        "multi_turn_no_system": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nA<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nB<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nC<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nD<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nE<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nF<|eot_id|>",
        "unicode": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nRéponds en français. 日本語もOK.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nGrüße, 世界 🌍 — ça va?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nTrès bien ✓ 🙂<|eot_id|>",
        "newlines_brackets": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nLine one.\nLine two <b>bold</b>.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nIs a < b > c?\n\n```python\nx = {'k': [1, 2]}\n```<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nYes: <tag attr=\"v\">\nsecond line\n\nthird & last.<|eot_id|>",
        "whitespace": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\npadded system<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nleading and trailing<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nspaced answer<|eot_id|>",
        "lookalike_tokens": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nExplain [INST] and <s> and <|im_start|> please<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThey are markers: [/INST] </s> <|im_end|>.<|eot_id|>",
        "quotes_backslashes": '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nUse "quotes" and \'apostrophes\' and \\backslashes\\.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nPath C:\\temp\\new? Tab:\there.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"""triple""" and {{ braces }} {% raw %}<|eot_id|>',
        "long_multi_turn_system": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nu1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\na1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nu2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\na2<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nu3<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\na3<|eot_id|>",
        "assistant_reasoning": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>",
        "reasoning_in_earlier_turn": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA2<|eot_id|>",
    },
    "mistralai/Mistral-7B-Instruct-v0.3": {
        "basic": "<s>[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST] 2+2 equals 4.</s>",
        "no_system": "<s>[INST] Hello[/INST] Hi! How can I help?</s>",
        "empty_system": "<s>[INST] \n\nHello[/INST] Hi!</s>",
        "multi_turn": "<s>[INST] Name a color.[/INST] Blue.</s>[INST] Be brief.\n\nAnother?[/INST] Green.</s>",
        "multi_turn_no_system": "<s>[INST] A[/INST] B</s>[INST] C[/INST] D</s>[INST] E[/INST] F</s>",
        "unicode": "<s>[INST] Réponds en français. 日本語もOK.\n\nGrüße, 世界 🌍 — ça va?[/INST] Très bien ✓ 🙂</s>",
        "newlines_brackets": "<s>[INST] Line one.\nLine two <b>bold</b>.\n\nIs a < b > c?\n\n```python\nx = {'k': [1, 2]}\n```[/INST] Yes: <tag attr=\"v\">\nsecond line\n\nthird & last.</s>",
        "whitespace": "<s>[INST]   padded system  \n\n\n  leading and trailing  \n[/INST] spaced answer</s>",
        "lookalike_tokens": "<s>[INST] Explain [INST] and <s> and <|im_start|> please[/INST] They are markers: [/INST] </s> <|im_end|>.</s>",
        "quotes_backslashes": '<s>[INST] Use "quotes" and \'apostrophes\' and \\backslashes\\.\n\nPath C:\\temp\\new? Tab:\there.[/INST] """triple""" and {{ braces }} {% raw %}</s>',
        "long_multi_turn_system": "<s>[INST] u1[/INST] a1</s>[INST] u2[/INST] a2</s>[INST] S\n\nu3[/INST] a3</s>",
        "assistant_reasoning": "<s>[INST] Q[/INST] A</s>",
        "reasoning_in_earlier_turn": "<s>[INST] Q1[/INST] A1</s>[INST] Q2[/INST] A2</s>",
    },
}


CASES = [(model, name) for model, cases in EXPECTED.items() for name in cases]


@pytest.mark.parametrize(("model", "name"), CASES, ids=[f"{m.split('/')[1]}-{n}" for m, n in CASES])
def test_matches_the_official_template(tmp_path, model, name):
    messages = copy.deepcopy(CONVERSATIONS[name])
    assert emitted(tmp_path, model)["format_conversation"](messages) == EXPECTED[model][name]


def test_every_family_has_a_dozen_conversations():
    assert len(EXPECTED) == 6
    assert all(len(cases) >= 12 for cases in EXPECTED.values())


def test_harmony_date_and_reasoning_effort_come_from_the_config(tmp_path):
    config = {
        "base_model": "openai/gpt-oss-20b",
        "chat_template": "auto",
        "system_prompt": "",
        "chat_template_date": "2024-12-31",
        "reasoning_effort": "high",
    }
    namespace = {}
    exec(compile(compile_config(write_config(tmp_path, config)).text, "emitted", "exec"), namespace)
    text = namespace["format_conversation"](copy.deepcopy(CONVERSATIONS["no_system"]))
    assert text == EXPECTED["openai/gpt-oss-20b"]["no_system"].replace(
        "2025-01-01", "2024-12-31"
    ).replace("Reasoning: medium", "Reasoning: high")
