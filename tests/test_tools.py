"""Tools in every chat format: tool definitions, tool calls and tool results render exactly as each
model's official chat template renders them (add_generation_prompt=False), the loss covers the
assistant's calls and replies and nothing else, and what a template cannot write is a DataError
that names the message.

The expected strings were rendered from the official templates with jinja2 set up as transformers'
apply_chat_template does (tools=the row's tools; a call's arguments given to the template as an
object), and are written out here; the tests read nothing else. Templates (the same sources as
test_chat_formats.py): openai/gpt-oss-20b chat_template.jinja (date 2025-01-01); Qwen/Qwen3-8B
(llama.cpp models/templates/Qwen-Qwen3-0.6B.jinja); Qwen/Qwen3-Coder-30B-A3B-Instruct (llama.cpp
models/templates/Qwen3-Coder.jinja, the XML-tool template); meta-llama/Llama-3.1-8B-Instruct
(llama.cpp models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja, tools in the first user
message, its default); mistralai/Mistral-7B-Instruct-v0.3 (Mistral's "v3" tool-use template, from
llama.cpp tests/test-chat-template.cpp). Mistral's expected strings keep the documented
deviation of test_chat_formats.py: the system message before the last user turn.
"""

from __future__ import annotations

import copy
import json

import pytest

from conftest import FORMATS, emitted, require, write_config
from mhgen.pipeline import compile_config

CONVERSATIONS = {
    "nested_schema": {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "search",
                    "description": "Search documents.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string"},
                            "limit": {
                                "type": "integer",
                                "description": "max results",
                                "default": 5,
                            },
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "ratio": {"type": "number", "nullable": True},
                            "strict": {"type": "boolean"},
                            "filters": {
                                "type": "object",
                                "properties": {
                                    "lang": {"type": "string"},
                                    "year": {"type": "integer"},
                                },
                                "required": ["lang"],
                            },
                            "points": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"x": {"type": "number"}},
                                },
                            },
                            "mode": {"type": ["string", "null"]},
                            "either": {
                                "oneOf": [
                                    {"type": "string", "description": "a name"},
                                    {"type": "integer", "default": 3},
                                ]
                            },
                            "anything": {},
                        },
                        "required": ["query"],
                        "additionalProperties": False,
                    },
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city name"},
                            "unit": {
                                "type": "string",
                                "enum": ["celsius", "fahrenheit"],
                                "default": "celsius",
                            },
                        },
                        "required": ["city"],
                    },
                },
            },
        ],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Find cats"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {
                            "name": "search",
                            "arguments": {
                                "query": "cats",
                                "limit": 3,
                                "tags": ["a", "b"],
                                "strict": True,
                                "filters": {"lang": "en"},
                                "ratio": 0.5,
                                "mode": None,
                            },
                        },
                        "id": "call00009",
                    }
                ],
            },
            {"role": "tool", "content": '["cat1"]', "tool_call_id": "call00009", "name": "search"},
            {"role": "assistant", "content": "Found cat1."},
        ],
    },
    "parallel": {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city name"},
                            "unit": {
                                "type": "string",
                                "enum": ["celsius", "fahrenheit"],
                                "default": "celsius",
                            },
                        },
                        "required": ["city"],
                    },
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "description": "Current time.",
                    "parameters": {"type": "object", "properties": {}},
                },
            },
        ],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        "id": "call00001",
                    },
                    {
                        "type": "function",
                        "function": {"name": "get_time", "arguments": {}},
                        "id": "call00002",
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call00001", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call00002", "content": "12:00"},
            {"role": "assistant", "content": "Sunny, and it is noon."},
        ],
    },
    "reasoning_call_final": {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city name"},
                            "unit": {
                                "type": "string",
                                "enum": ["celsius", "fahrenheit"],
                                "default": "celsius",
                            },
                        },
                        "required": ["city"],
                    },
                },
            }
        ],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "thinking": "I should call get_weather.",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        "id": "call00001",
                    }
                ],
            },
            {"role": "tool", "content": "sunny", "tool_call_id": "call00001"},
            {"role": "assistant", "content": "Sunny.", "thinking": "The tool says sunny."},
        ],
    },
    "reasoning_ends_with_call": {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city name"},
                            "unit": {
                                "type": "string",
                                "enum": ["celsius", "fahrenheit"],
                                "default": "celsius",
                            },
                        },
                        "required": ["city"],
                    },
                },
            }
        ],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "thinking": "I should call get_weather.",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        "id": "call00001",
                    }
                ],
            },
        ],
    },
    "rounds": {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city name"},
                            "unit": {
                                "type": "string",
                                "enum": ["celsius", "fahrenheit"],
                                "default": "celsius",
                            },
                        },
                        "required": ["city"],
                    },
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "description": "Current time.",
                    "parameters": {"type": "object", "properties": {}},
                },
            },
        ],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        "id": "call00001",
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call00001", "content": "sunny"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_time", "arguments": {}},
                        "id": "call00002",
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call00002", "content": "12:00"},
            {"role": "assistant", "content": "Sunny at noon."},
            {"role": "user", "content": "And in Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": {"city": "Rome", "unit": "celsius"},
                        },
                        "id": "call00003",
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call00003", "content": "rain"},
            {"role": "assistant", "content": "Rain in Rome."},
        ],
    },
    "single": {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city name"},
                            "unit": {
                                "type": "string",
                                "enum": ["celsius", "fahrenheit"],
                                "default": "celsius",
                            },
                        },
                        "required": ["city"],
                    },
                },
            }
        ],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        "id": "call00001",
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call00001",
                "name": "get_weather",
                "content": "sunny, 22C",
            },
            {"role": "assistant", "content": "It is sunny and 22C in Paris."},
        ],
    },
    "single_sys_strargs": {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city name"},
                            "unit": {
                                "type": "string",
                                "enum": ["celsius", "fahrenheit"],
                                "default": "celsius",
                            },
                        },
                        "required": ["city"],
                    },
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "description": "Current time.",
                    "parameters": {"type": "object", "properties": {}},
                },
            },
        ],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city":"Paris","unit":"celsius"}',
                        },
                        "id": "abcdefgh1",
                    }
                ],
            },
            {"role": "tool", "content": '{"temp": 22}', "tool_call_id": "abcdefgh1"},
            {"role": "assistant", "content": "22 degrees."},
        ],
    },
}

EXPECTED = {
    "openai/gpt-oss-20b": {
        "single": "<|start|>system<|message|>You are ChatGPT, a large language "
        "model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n"
        "Current date: 2025-01-01\n"
        "\n"
        "Reasoning: medium\n"
        "\n"
        "# Valid channels: analysis, commentary, final. Channel must be "
        "included for every message.\n"
        "Calls to these tools must go to the commentary channel: "
        "'functions'.<|end|><|start|>developer<|message|># Tools\n"
        "\n"
        "## functions\n"
        "\n"
        "namespace functions {\n"
        "\n"
        "// Get the current weather in a city.\n"
        "type get_weather = (_: {\n"
        "// The city name\n"
        "city: string,\n"
        'unit?: "celsius" | "fahrenheit", // default: celsius,\n'
        "}) => any;\n"
        "\n"
        "} // namespace functions<|end|><|start|>user<|message|>What's "
        "the weather in Paris?<|end|><|start|>assistant "
        "to=functions.get_weather<|channel|>commentary "
        'json<|message|>{"city": '
        '"Paris"}<|call|><|start|>functions.get_weather '
        'to=assistant<|channel|>commentary<|message|>"sunny, '
        '22C"<|end|><|start|>assistant<|channel|>final<|message|>It is '
        "sunny and 22C in Paris.<|return|>",
        "rounds": "<|start|>system<|message|>You are ChatGPT, a large language "
        "model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n"
        "Current date: 2025-01-01\n"
        "\n"
        "Reasoning: medium\n"
        "\n"
        "# Valid channels: analysis, commentary, final. Channel must be "
        "included for every message.\n"
        "Calls to these tools must go to the commentary channel: "
        "'functions'.<|end|><|start|>developer<|message|># Instructions\n"
        "\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "## functions\n"
        "\n"
        "namespace functions {\n"
        "\n"
        "// Get the current weather in a city.\n"
        "type get_weather = (_: {\n"
        "// The city name\n"
        "city: string,\n"
        'unit?: "celsius" | "fahrenheit", // default: celsius,\n'
        "}) => any;\n"
        "\n"
        "// Current time.\n"
        "type get_time = () => any;\n"
        "\n"
        "} // namespace functions<|end|><|start|>user<|message|>What's "
        "the weather in Paris?<|end|><|start|>assistant "
        "to=functions.get_weather<|channel|>commentary "
        'json<|message|>{"city": '
        '"Paris"}<|call|><|start|>functions.get_weather '
        'to=assistant<|channel|>commentary<|message|>"sunny"<|end|><|start|>assistant '
        "to=functions.get_time<|channel|>commentary "
        "json<|message|>{}<|call|><|start|>functions.get_time "
        'to=assistant<|channel|>commentary<|message|>"12:00"<|end|><|start|>assistant<|channel|>final<|message|>Sunny '
        "at noon.<|end|><|start|>user<|message|>And in "
        "Rome?<|end|><|start|>assistant "
        "to=functions.get_weather<|channel|>commentary "
        'json<|message|>{"city": "Rome", "unit": '
        '"celsius"}<|call|><|start|>functions.get_weather '
        'to=assistant<|channel|>commentary<|message|>"rain"<|end|><|start|>assistant<|channel|>final<|message|>Rain '
        "in Rome.<|return|>",
        "reasoning_call_final": "<|start|>system<|message|>You are ChatGPT, a "
        "large language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n"
        "Current date: 2025-01-01\n"
        "\n"
        "Reasoning: medium\n"
        "\n"
        "# Valid channels: analysis, commentary, final. "
        "Channel must be included for every message.\n"
        "Calls to these tools must go to the commentary "
        "channel: "
        "'functions'.<|end|><|start|>developer<|message|># "
        "Tools\n"
        "\n"
        "## functions\n"
        "\n"
        "namespace functions {\n"
        "\n"
        "// Get the current weather in a city.\n"
        "type get_weather = (_: {\n"
        "// The city name\n"
        "city: string,\n"
        'unit?: "celsius" | "fahrenheit", // default: '
        "celsius,\n"
        "}) => any;\n"
        "\n"
        "} // namespace "
        "functions<|end|><|start|>user<|message|>What's "
        "the weather in Paris?<|end|><|start|>assistant "
        "to=functions.get_weather<|channel|>commentary "
        'json<|message|>{"city": '
        '"Paris"}<|call|><|start|>functions.get_weather '
        'to=assistant<|channel|>commentary<|message|>"sunny"<|end|><|start|>assistant<|channel|>analysis<|message|>The '
        "tool says "
        "sunny.<|end|><|start|>assistant<|channel|>final<|message|>Sunny.<|return|>",
        "reasoning_ends_with_call": "<|start|>system<|message|>You are ChatGPT, a "
        "large language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n"
        "Current date: 2025-01-01\n"
        "\n"
        "Reasoning: medium\n"
        "\n"
        "# Valid channels: analysis, commentary, "
        "final. Channel must be included for every "
        "message.\n"
        "Calls to these tools must go to the "
        "commentary channel: "
        "'functions'.<|end|><|start|>developer<|message|># "
        "Tools\n"
        "\n"
        "## functions\n"
        "\n"
        "namespace functions {\n"
        "\n"
        "// Get the current weather in a city.\n"
        "type get_weather = (_: {\n"
        "// The city name\n"
        "city: string,\n"
        'unit?: "celsius" | "fahrenheit", // default: '
        "celsius,\n"
        "}) => any;\n"
        "\n"
        "} // namespace "
        "functions<|end|><|start|>user<|message|>What's "
        "the weather in "
        "Paris?<|end|><|start|>assistant<|channel|>analysis<|message|>I "
        "should call "
        "get_weather.<|end|><|start|>assistant "
        "to=functions.get_weather<|channel|>commentary "
        'json<|message|>{"city": "Paris"}<|call|>',
        "single_sys_strargs": "<|start|>system<|message|>You are ChatGPT, a large "
        "language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n"
        "Current date: 2025-01-01\n"
        "\n"
        "Reasoning: medium\n"
        "\n"
        "# Valid channels: analysis, commentary, final. "
        "Channel must be included for every message.\n"
        "Calls to these tools must go to the commentary "
        "channel: "
        "'functions'.<|end|><|start|>developer<|message|># "
        "Instructions\n"
        "\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "## functions\n"
        "\n"
        "namespace functions {\n"
        "\n"
        "// Get the current weather in a city.\n"
        "type get_weather = (_: {\n"
        "// The city name\n"
        "city: string,\n"
        'unit?: "celsius" | "fahrenheit", // default: '
        "celsius,\n"
        "}) => any;\n"
        "\n"
        "// Current time.\n"
        "type get_time = () => any;\n"
        "\n"
        "} // namespace "
        "functions<|end|><|start|>user<|message|>What's the "
        "weather in Paris?<|end|><|start|>assistant "
        "to=functions.get_weather<|channel|>commentary "
        'json<|message|>{"city": "Paris", "unit": '
        '"celsius"}<|call|><|start|>functions.get_weather '
        'to=assistant<|channel|>commentary<|message|>"{\\"temp\\": '
        '22}"<|end|><|start|>assistant<|channel|>final<|message|>22 '
        "degrees.<|return|>",
        "nested_schema": "<|start|>system<|message|>You are ChatGPT, a large "
        "language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n"
        "Current date: 2025-01-01\n"
        "\n"
        "Reasoning: medium\n"
        "\n"
        "# Valid channels: analysis, commentary, final. Channel "
        "must be included for every message.\n"
        "Calls to these tools must go to the commentary channel: "
        "'functions'.<|end|><|start|>developer<|message|># "
        "Instructions\n"
        "\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "## functions\n"
        "\n"
        "namespace functions {\n"
        "\n"
        "// Search documents.\n"
        "type search = (_: {\n"
        "query: string,\n"
        "// max results\n"
        "limit?: number, // default: 5,\n"
        "tags?: string[],\n"
        "ratio?: number,\n"
        "strict?: boolean,\n"
        "filters?: {\n"
        "lang: \n"
        "                string, year?: \n"
        "                number},\n"
        "points?: {\n"
        "x?: \n"
        "                number}[],\n"
        "mode?: string | null,\n"
        "either?: string// a name | \n"
        "number                    // default: 3,\n"
        "anything?: any,\n"
        "}) => any;\n"
        "\n"
        "// Get the current weather in a city.\n"
        "type get_weather = (_: {\n"
        "// The city name\n"
        "city: string,\n"
        'unit?: "celsius" | "fahrenheit", // default: celsius,\n'
        "}) => any;\n"
        "\n"
        "} // namespace "
        "functions<|end|><|start|>user<|message|>Find "
        "cats<|end|><|start|>assistant "
        "to=functions.search<|channel|>commentary "
        'json<|message|>{"query": "cats", "limit": 3, "tags": '
        '["a", "b"], "strict": true, "filters": {"lang": "en"}, '
        '"ratio": 0.5, "mode": '
        "null}<|call|><|start|>functions.search "
        'to=assistant<|channel|>commentary<|message|>"[\\"cat1\\"]"<|end|><|start|>assistant<|channel|>final<|message|>Found '
        "cat1.<|return|>",
    },
    "Qwen/Qwen3-8B": {
        "single": "<|im_start|>system\n"
        "# Tools\n"
        "\n"
        "You may call one or more functions to assist with the user query.\n"
        "\n"
        "You are provided with function signatures within <tools></tools> XML "
        "tags:\n"
        "<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", '
        '"description": "Get the current weather in a city.", "parameters": '
        '{"type": "object", "properties": {"city": {"type": "string", '
        '"description": "The city name"}, "unit": {"type": "string", "enum": '
        '["celsius", "fahrenheit"], "default": "celsius"}}, "required": '
        '["city"]}}}\n'
        "</tools>\n"
        "\n"
        "For each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n"
        "<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny, 22C\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        "<think>\n"
        "\n"
        "</think>\n"
        "\n"
        "It is sunny and 22C in Paris.<|im_end|>\n",
        "parallel": "<|im_start|>system\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You may call one or more functions to assist with the user query.\n"
        "\n"
        "You are provided with function signatures within <tools></tools> "
        "XML tags:\n"
        "<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", '
        '"description": "Get the current weather in a city.", "parameters": '
        '{"type": "object", "properties": {"city": {"type": "string", '
        '"description": "The city name"}, "unit": {"type": "string", '
        '"enum": ["celsius", "fahrenheit"], "default": "celsius"}}, '
        '"required": ["city"]}}}\n'
        '{"type": "function", "function": {"name": "get_time", '
        '"description": "Current time.", "parameters": {"type": "object", '
        '"properties": {}}}}\n'
        "</tools>\n"
        "\n"
        "For each function call, return a json object with function name "
        "and arguments within <tool_call></tool_call> XML tags:\n"
        "<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call>\n"
        "<tool_call>\n"
        '{"name": "get_time", "arguments": {}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny\n"
        "</tool_response>\n"
        "<tool_response>\n"
        "12:00\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        "<think>\n"
        "\n"
        "</think>\n"
        "\n"
        "Sunny, and it is noon.<|im_end|>\n",
        "rounds": "<|im_start|>system\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You may call one or more functions to assist with the user query.\n"
        "\n"
        "You are provided with function signatures within <tools></tools> XML "
        "tags:\n"
        "<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", '
        '"description": "Get the current weather in a city.", "parameters": '
        '{"type": "object", "properties": {"city": {"type": "string", '
        '"description": "The city name"}, "unit": {"type": "string", "enum": '
        '["celsius", "fahrenheit"], "default": "celsius"}}, "required": '
        '["city"]}}}\n'
        '{"type": "function", "function": {"name": "get_time", "description": '
        '"Current time.", "parameters": {"type": "object", "properties": '
        "{}}}}\n"
        "</tools>\n"
        "\n"
        "For each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n"
        "<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        '{"name": "get_time", "arguments": {}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "12:00\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        "Sunny at noon.<|im_end|>\n"
        "<|im_start|>user\n"
        "And in Rome?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Rome", "unit": '
        '"celsius"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "rain\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        "<think>\n"
        "\n"
        "</think>\n"
        "\n"
        "Rain in Rome.<|im_end|>\n",
        "reasoning_call_final": "<|im_start|>system\n"
        "# Tools\n"
        "\n"
        "You may call one or more functions to assist with the "
        "user query.\n"
        "\n"
        "You are provided with function signatures within "
        "<tools></tools> XML tags:\n"
        "<tools>\n"
        '{"type": "function", "function": {"name": '
        '"get_weather", "description": "Get the current weather '
        'in a city.", "parameters": {"type": "object", '
        '"properties": {"city": {"type": "string", '
        '"description": "The city name"}, "unit": {"type": '
        '"string", "enum": ["celsius", "fahrenheit"], '
        '"default": "celsius"}}, "required": ["city"]}}}\n'
        "</tools>\n"
        "\n"
        "For each function call, return a json object with "
        "function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        "<tool_call>\n"
        '{"name": <function-name>, "arguments": '
        "<args-json-object>}\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<think>\n"
        "I should call get_weather.\n"
        "</think>\n"
        "\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": '
        '"Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        "<think>\n"
        "The tool says sunny.\n"
        "</think>\n"
        "\n"
        "Sunny.<|im_end|>\n",
        "reasoning_ends_with_call": "<|im_start|>system\n"
        "# Tools\n"
        "\n"
        "You may call one or more functions to assist with "
        "the user query.\n"
        "\n"
        "You are provided with function signatures within "
        "<tools></tools> XML tags:\n"
        "<tools>\n"
        '{"type": "function", "function": {"name": '
        '"get_weather", "description": "Get the current '
        'weather in a city.", "parameters": {"type": '
        '"object", "properties": {"city": {"type": '
        '"string", "description": "The city name"}, "unit": '
        '{"type": "string", "enum": ["celsius", '
        '"fahrenheit"], "default": "celsius"}}, "required": '
        '["city"]}}}\n'
        "</tools>\n"
        "\n"
        "For each function call, return a json object with "
        "function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        "<tool_call>\n"
        '{"name": <function-name>, "arguments": '
        "<args-json-object>}\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<think>\n"
        "I should call get_weather.\n"
        "</think>\n"
        "\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": '
        '"Paris"}}\n'
        "</tool_call><|im_end|>\n",
        "single_sys_strargs": "<|im_start|>system\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You may call one or more functions to assist with the "
        "user query.\n"
        "\n"
        "You are provided with function signatures within "
        "<tools></tools> XML tags:\n"
        "<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", '
        '"description": "Get the current weather in a city.", '
        '"parameters": {"type": "object", "properties": {"city": '
        '{"type": "string", "description": "The city name"}, '
        '"unit": {"type": "string", "enum": ["celsius", '
        '"fahrenheit"], "default": "celsius"}}, "required": '
        '["city"]}}}\n'
        '{"type": "function", "function": {"name": "get_time", '
        '"description": "Current time.", "parameters": {"type": '
        '"object", "properties": {}}}}\n'
        "</tools>\n"
        "\n"
        "For each function call, return a json object with "
        "function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        "<tool_call>\n"
        '{"name": <function-name>, "arguments": '
        "<args-json-object>}\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": '
        '{"city":"Paris","unit":"celsius"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        '{"temp": 22}\n'
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
        "<think>\n"
        "\n"
        "</think>\n"
        "\n"
        "22 degrees.<|im_end|>\n",
    },
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": {
        "single": "<|im_start|>system\n"
        "You are Qwen, a helpful AI assistant that can "
        "interact with a computer to solve tasks.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You have access to the following tools:\n"
        "\n"
        "<tools>\n"
        "<function>\n"
        "<name>get_weather</name>\n"
        "<description>Get the current weather in a "
        "city.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>city</name>\n"
        "<type>string</type>\n"
        "<description>The city name</description>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>unit</name>\n"
        "<type>string</type>\n"
        '<enum>["celsius", "fahrenheit"]</enum>\n'
        "<default>celsius</default>\n"
        "</parameter>\n"
        '<required>["city"]</required>\n'
        "</parameters>\n"
        "</function>\n"
        "</tools>\n"
        "\n"
        "If you choose to call a tool ONLY reply in the "
        "following format with NO suffix:\n"
        "\n"
        "<tool_call>\n"
        "<function=example_function_name>\n"
        "<parameter=example_parameter_1>\n"
        "value_1\n"
        "</parameter>\n"
        "<parameter=example_parameter_2>\n"
        "value_2\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "\n"
        "<IMPORTANT>\n"
        "Reminder:\n"
        "- Function calls MUST follow the specified "
        "format: the tool calling block MUST begin with "
        "an opening <tool_call> tag and end with a "
        "closing </tool_call> tag.\n"
        "- Required parameters MUST be specified\n"
        "- You may provide optional reasoning for your "
        "function call in natural language BEFORE the "
        "function call, but NOT after\n"
        "- If there is no function call available, answer "
        "the question like normal with your current "
        "knowledge and do not tell the user about "
        "function calls\n"
        "</IMPORTANT><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Paris\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny, 22C\n"
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "It is sunny and 22C in Paris.<|im_end|>\n",
        "parallel": "<|im_start|>system\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You have access to the following tools:\n"
        "\n"
        "<tools>\n"
        "<function>\n"
        "<name>get_weather</name>\n"
        "<description>Get the current weather in a "
        "city.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>city</name>\n"
        "<type>string</type>\n"
        "<description>The city name</description>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>unit</name>\n"
        "<type>string</type>\n"
        '<enum>["celsius", "fahrenheit"]</enum>\n'
        "<default>celsius</default>\n"
        "</parameter>\n"
        '<required>["city"]</required>\n'
        "</parameters>\n"
        "</function>\n"
        "<function>\n"
        "<name>get_time</name>\n"
        "<description>Current time.</description>\n"
        "<parameters>\n"
        "</parameters>\n"
        "</function>\n"
        "</tools>\n"
        "\n"
        "If you choose to call a tool ONLY reply in the "
        "following format with NO suffix:\n"
        "\n"
        "<tool_call>\n"
        "<function=example_function_name>\n"
        "<parameter=example_parameter_1>\n"
        "value_1\n"
        "</parameter>\n"
        "<parameter=example_parameter_2>\n"
        "value_2\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "\n"
        "<IMPORTANT>\n"
        "Reminder:\n"
        "- Function calls MUST follow the specified "
        "format: the tool calling block MUST begin with "
        "an opening <tool_call> tag and end with a "
        "closing </tool_call> tag.\n"
        "- Required parameters MUST be specified\n"
        "- You may provide optional reasoning for your "
        "function call in natural language BEFORE the "
        "function call, but NOT after\n"
        "- If there is no function call available, "
        "answer the question like normal with your "
        "current knowledge and do not tell the user "
        "about function calls\n"
        "</IMPORTANT><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Paris\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "<tool_call>\n"
        "<function=get_time>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny\n"
        "</tool_response>\n"
        "<tool_response>\n"
        "12:00\n"
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "Sunny, and it is noon.<|im_end|>\n",
        "rounds": "<|im_start|>system\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You have access to the following tools:\n"
        "\n"
        "<tools>\n"
        "<function>\n"
        "<name>get_weather</name>\n"
        "<description>Get the current weather in a "
        "city.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>city</name>\n"
        "<type>string</type>\n"
        "<description>The city name</description>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>unit</name>\n"
        "<type>string</type>\n"
        '<enum>["celsius", "fahrenheit"]</enum>\n'
        "<default>celsius</default>\n"
        "</parameter>\n"
        '<required>["city"]</required>\n'
        "</parameters>\n"
        "</function>\n"
        "<function>\n"
        "<name>get_time</name>\n"
        "<description>Current time.</description>\n"
        "<parameters>\n"
        "</parameters>\n"
        "</function>\n"
        "</tools>\n"
        "\n"
        "If you choose to call a tool ONLY reply in the "
        "following format with NO suffix:\n"
        "\n"
        "<tool_call>\n"
        "<function=example_function_name>\n"
        "<parameter=example_parameter_1>\n"
        "value_1\n"
        "</parameter>\n"
        "<parameter=example_parameter_2>\n"
        "value_2\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "\n"
        "<IMPORTANT>\n"
        "Reminder:\n"
        "- Function calls MUST follow the specified "
        "format: the tool calling block MUST begin with "
        "an opening <tool_call> tag and end with a "
        "closing </tool_call> tag.\n"
        "- Required parameters MUST be specified\n"
        "- You may provide optional reasoning for your "
        "function call in natural language BEFORE the "
        "function call, but NOT after\n"
        "- If there is no function call available, answer "
        "the question like normal with your current "
        "knowledge and do not tell the user about "
        "function calls\n"
        "</IMPORTANT><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Paris\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny\n"
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_time>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "12:00\n"
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "Sunny at noon.<|im_end|>\n"
        "<|im_start|>user\n"
        "And in Rome?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Rome\n"
        "</parameter>\n"
        "<parameter=unit>\n"
        "celsius\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "rain\n"
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "Rain in Rome.<|im_end|>\n",
        "reasoning_call_final": "<|im_start|>system\n"
        "You are Qwen, a helpful AI "
        "assistant that can interact with a "
        "computer to solve tasks.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You have access to the following "
        "tools:\n"
        "\n"
        "<tools>\n"
        "<function>\n"
        "<name>get_weather</name>\n"
        "<description>Get the current "
        "weather in a city.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>city</name>\n"
        "<type>string</type>\n"
        "<description>The city "
        "name</description>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>unit</name>\n"
        "<type>string</type>\n"
        '<enum>["celsius", '
        '"fahrenheit"]</enum>\n'
        "<default>celsius</default>\n"
        "</parameter>\n"
        '<required>["city"]</required>\n'
        "</parameters>\n"
        "</function>\n"
        "</tools>\n"
        "\n"
        "If you choose to call a tool ONLY "
        "reply in the following format with "
        "NO suffix:\n"
        "\n"
        "<tool_call>\n"
        "<function=example_function_name>\n"
        "<parameter=example_parameter_1>\n"
        "value_1\n"
        "</parameter>\n"
        "<parameter=example_parameter_2>\n"
        "value_2\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "\n"
        "<IMPORTANT>\n"
        "Reminder:\n"
        "- Function calls MUST follow the "
        "specified format: the tool calling "
        "block MUST begin with an opening "
        "<tool_call> tag and end with a "
        "closing </tool_call> tag.\n"
        "- Required parameters MUST be "
        "specified\n"
        "- You may provide optional "
        "reasoning for your function call "
        "in natural language BEFORE the "
        "function call, but NOT after\n"
        "- If there is no function call "
        "available, answer the question "
        "like normal with your current "
        "knowledge and do not tell the user "
        "about function calls\n"
        "</IMPORTANT><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in "
        "Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Paris\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        "sunny\n"
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "Sunny.<|im_end|>\n",
        "reasoning_ends_with_call": "<|im_start|>system\n"
        "You are Qwen, a helpful AI "
        "assistant that can interact "
        "with a computer to solve "
        "tasks.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You have access to the "
        "following tools:\n"
        "\n"
        "<tools>\n"
        "<function>\n"
        "<name>get_weather</name>\n"
        "<description>Get the current "
        "weather in a "
        "city.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>city</name>\n"
        "<type>string</type>\n"
        "<description>The city "
        "name</description>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>unit</name>\n"
        "<type>string</type>\n"
        '<enum>["celsius", '
        '"fahrenheit"]</enum>\n'
        "<default>celsius</default>\n"
        "</parameter>\n"
        '<required>["city"]</required>\n'
        "</parameters>\n"
        "</function>\n"
        "</tools>\n"
        "\n"
        "If you choose to call a tool "
        "ONLY reply in the following "
        "format with NO suffix:\n"
        "\n"
        "<tool_call>\n"
        "<function=example_function_name>\n"
        "<parameter=example_parameter_1>\n"
        "value_1\n"
        "</parameter>\n"
        "<parameter=example_parameter_2>\n"
        "value_2\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "\n"
        "<IMPORTANT>\n"
        "Reminder:\n"
        "- Function calls MUST follow "
        "the specified format: the tool "
        "calling block MUST begin with "
        "an opening <tool_call> tag and "
        "end with a closing "
        "</tool_call> tag.\n"
        "- Required parameters MUST be "
        "specified\n"
        "- You may provide optional "
        "reasoning for your function "
        "call in natural language "
        "BEFORE the function call, but "
        "NOT after\n"
        "- If there is no function call "
        "available, answer the question "
        "like normal with your current "
        "knowledge and do not tell the "
        "user about function calls\n"
        "</IMPORTANT><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in "
        "Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Paris\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n",
        "single_sys_strargs": "<|im_start|>system\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You have access to the following "
        "tools:\n"
        "\n"
        "<tools>\n"
        "<function>\n"
        "<name>get_weather</name>\n"
        "<description>Get the current weather "
        "in a city.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>city</name>\n"
        "<type>string</type>\n"
        "<description>The city "
        "name</description>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>unit</name>\n"
        "<type>string</type>\n"
        '<enum>["celsius", '
        '"fahrenheit"]</enum>\n'
        "<default>celsius</default>\n"
        "</parameter>\n"
        '<required>["city"]</required>\n'
        "</parameters>\n"
        "</function>\n"
        "<function>\n"
        "<name>get_time</name>\n"
        "<description>Current "
        "time.</description>\n"
        "<parameters>\n"
        "</parameters>\n"
        "</function>\n"
        "</tools>\n"
        "\n"
        "If you choose to call a tool ONLY "
        "reply in the following format with "
        "NO suffix:\n"
        "\n"
        "<tool_call>\n"
        "<function=example_function_name>\n"
        "<parameter=example_parameter_1>\n"
        "value_1\n"
        "</parameter>\n"
        "<parameter=example_parameter_2>\n"
        "value_2\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "\n"
        "<IMPORTANT>\n"
        "Reminder:\n"
        "- Function calls MUST follow the "
        "specified format: the tool calling "
        "block MUST begin with an opening "
        "<tool_call> tag and end with a "
        "closing </tool_call> tag.\n"
        "- Required parameters MUST be "
        "specified\n"
        "- You may provide optional reasoning "
        "for your function call in natural "
        "language BEFORE the function call, "
        "but NOT after\n"
        "- If there is no function call "
        "available, answer the question like "
        "normal with your current knowledge "
        "and do not tell the user about "
        "function calls\n"
        "</IMPORTANT><|im_end|>\n"
        "<|im_start|>user\n"
        "What's the weather in "
        "Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Paris\n"
        "</parameter>\n"
        "<parameter=unit>\n"
        "celsius\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        '{"temp": 22}\n'
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "22 degrees.<|im_end|>\n",
        "nested_schema": "<|im_start|>system\n"
        "You are a helpful assistant.\n"
        "\n"
        "# Tools\n"
        "\n"
        "You have access to the following tools:\n"
        "\n"
        "<tools>\n"
        "<function>\n"
        "<name>search</name>\n"
        "<description>Search "
        "documents.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>query</name>\n"
        "<type>string</type>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>limit</name>\n"
        "<type>integer</type>\n"
        "<description>max results</description>\n"
        "<default>5</default>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>tags</name>\n"
        "<type>array</type>\n"
        '<items>{"type": "string"}</items>\n'
        "</parameter>\n"
        "<parameter>\n"
        "<name>ratio</name>\n"
        "<type>number</type>\n"
        "<nullable>True</nullable>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>strict</name>\n"
        "<type>boolean</type>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>filters</name>\n"
        "<type>object</type>\n"
        '<properties>{"lang": {"type": "string"}, '
        '"year": {"type": '
        '"integer"}}</properties>\n'
        '<required>["lang"]</required>\n'
        "</parameter>\n"
        "<parameter>\n"
        "<name>points</name>\n"
        "<type>array</type>\n"
        '<items>{"type": "object", "properties": '
        '{"x": {"type": "number"}}}</items>\n'
        "</parameter>\n"
        "<parameter>\n"
        "<name>mode</name>\n"
        "<type>['string', 'null']</type>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>either</name>\n"
        '<oneOf>[{"type": "string", "description": '
        '"a name"}, {"type": "integer", "default": '
        "3}]</oneOf>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>anything</name>\n"
        "</parameter>\n"
        '<required>["query"]</required>\n'
        "<additionalProperties>False</additionalProperties>\n"
        "</parameters>\n"
        "</function>\n"
        "<function>\n"
        "<name>get_weather</name>\n"
        "<description>Get the current weather in a "
        "city.</description>\n"
        "<parameters>\n"
        "<parameter>\n"
        "<name>city</name>\n"
        "<type>string</type>\n"
        "<description>The city name</description>\n"
        "</parameter>\n"
        "<parameter>\n"
        "<name>unit</name>\n"
        "<type>string</type>\n"
        '<enum>["celsius", "fahrenheit"]</enum>\n'
        "<default>celsius</default>\n"
        "</parameter>\n"
        '<required>["city"]</required>\n'
        "</parameters>\n"
        "</function>\n"
        "</tools>\n"
        "\n"
        "If you choose to call a tool ONLY reply "
        "in the following format with NO suffix:\n"
        "\n"
        "<tool_call>\n"
        "<function=example_function_name>\n"
        "<parameter=example_parameter_1>\n"
        "value_1\n"
        "</parameter>\n"
        "<parameter=example_parameter_2>\n"
        "value_2\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call>\n"
        "\n"
        "<IMPORTANT>\n"
        "Reminder:\n"
        "- Function calls MUST follow the "
        "specified format: the tool calling block "
        "MUST begin with an opening <tool_call> "
        "tag and end with a closing </tool_call> "
        "tag.\n"
        "- Required parameters MUST be specified\n"
        "- You may provide optional reasoning for "
        "your function call in natural language "
        "BEFORE the function call, but NOT after\n"
        "- If there is no function call available, "
        "answer the question like normal with your "
        "current knowledge and do not tell the "
        "user about function calls\n"
        "</IMPORTANT><|im_end|>\n"
        "<|im_start|>user\n"
        "Find cats<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        "<function=search>\n"
        "<parameter=query>\n"
        "cats\n"
        "</parameter>\n"
        "<parameter=limit>\n"
        "3\n"
        "</parameter>\n"
        "<parameter=tags>\n"
        '["a", "b"]\n'
        "</parameter>\n"
        "<parameter=strict>\n"
        "True\n"
        "</parameter>\n"
        "<parameter=filters>\n"
        '{"lang": "en"}\n'
        "</parameter>\n"
        "<parameter=ratio>\n"
        "0.5\n"
        "</parameter>\n"
        "<parameter=mode>\n"
        "None\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n"
        "<tool_response>\n"
        '["cat1"]\n'
        "</tool_response>\n"
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
        "Found cat1.<|im_end|>\n",
    },
    "meta-llama/Llama-3.1-8B-Instruct": {
        "single": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
        "\n"
        "Environment: ipython\n"
        "Cutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n"
        "\n"
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "Given the following functions, please respond "
        "with a JSON for a function call with its proper "
        "arguments that best answers the given prompt.\n"
        "\n"
        'Respond in the format {"name": function name, '
        '"parameters": dictionary of argument name and its '
        "value}.Do not use variables.\n"
        "\n"
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_weather",\n'
        '        "description": "Get the current weather '
        'in a city.",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": {\n'
        '                "city": {\n'
        '                    "type": "string",\n'
        '                    "description": "The city '
        'name"\n'
        "                },\n"
        '                "unit": {\n'
        '                    "type": "string",\n'
        '                    "enum": [\n'
        '                        "celsius",\n'
        '                        "fahrenheit"\n'
        "                    ],\n"
        '                    "default": "celsius"\n'
        "                }\n"
        "            },\n"
        '            "required": [\n'
        '                "city"\n'
        "            ]\n"
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "What's the weather in "
        "Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        '{"name": "get_weather", "parameters": {"city": '
        '"Paris"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n'
        "\n"
        '"sunny, '
        '22C"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
        "\n"
        "It is sunny and 22C in Paris.<|eot_id|>",
        "rounds": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
        "\n"
        "Environment: ipython\n"
        "Cutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n"
        "\n"
        "You are a helpful "
        "assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "Given the following functions, please respond "
        "with a JSON for a function call with its proper "
        "arguments that best answers the given prompt.\n"
        "\n"
        'Respond in the format {"name": function name, '
        '"parameters": dictionary of argument name and its '
        "value}.Do not use variables.\n"
        "\n"
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_weather",\n'
        '        "description": "Get the current weather '
        'in a city.",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": {\n'
        '                "city": {\n'
        '                    "type": "string",\n'
        '                    "description": "The city '
        'name"\n'
        "                },\n"
        '                "unit": {\n'
        '                    "type": "string",\n'
        '                    "enum": [\n'
        '                        "celsius",\n'
        '                        "fahrenheit"\n'
        "                    ],\n"
        '                    "default": "celsius"\n'
        "                }\n"
        "            },\n"
        '            "required": [\n'
        '                "city"\n'
        "            ]\n"
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_time",\n'
        '        "description": "Current time.",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": {}\n'
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "What's the weather in "
        "Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        '{"name": "get_weather", "parameters": {"city": '
        '"Paris"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n'
        "\n"
        '"sunny"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
        "\n"
        '{"name": "get_time", "parameters": '
        "{}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
        "\n"
        '"12:00"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
        "\n"
        "Sunny at "
        "noon.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "And in "
        "Rome?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        '{"name": "get_weather", "parameters": {"city": '
        '"Rome", "unit": '
        '"celsius"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n'
        "\n"
        '"rain"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
        "\n"
        "Rain in Rome.<|eot_id|>",
        "reasoning_call_final": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
        "\n"
        "Environment: ipython\n"
        "Cutting Knowledge Date: December "
        "2023\n"
        "Today Date: 26 Jul 2024\n"
        "\n"
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "Given the following functions, "
        "please respond with a JSON for a "
        "function call with its proper "
        "arguments that best answers the "
        "given prompt.\n"
        "\n"
        'Respond in the format {"name": '
        'function name, "parameters": '
        "dictionary of argument name and its "
        "value}.Do not use variables.\n"
        "\n"
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_weather",\n'
        '        "description": "Get the '
        'current weather in a city.",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": {\n'
        '                "city": {\n'
        '                    "type": '
        '"string",\n'
        '                    "description": '
        '"The city name"\n'
        "                },\n"
        '                "unit": {\n'
        '                    "type": '
        '"string",\n'
        '                    "enum": [\n'
        '                        "celsius",\n'
        "                        "
        '"fahrenheit"\n'
        "                    ],\n"
        '                    "default": '
        '"celsius"\n'
        "                }\n"
        "            },\n"
        '            "required": [\n'
        '                "city"\n'
        "            ]\n"
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "What's the weather in "
        "Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        '{"name": "get_weather", '
        '"parameters": {"city": '
        '"Paris"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n'
        "\n"
        '"sunny"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
        "\n"
        "Sunny.<|eot_id|>",
        "reasoning_ends_with_call": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
        "\n"
        "Environment: ipython\n"
        "Cutting Knowledge Date: "
        "December 2023\n"
        "Today Date: 26 Jul 2024\n"
        "\n"
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "Given the following functions, "
        "please respond with a JSON for "
        "a function call with its proper "
        "arguments that best answers the "
        "given prompt.\n"
        "\n"
        'Respond in the format {"name": '
        'function name, "parameters": '
        "dictionary of argument name and "
        "its value}.Do not use "
        "variables.\n"
        "\n"
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_weather",\n'
        '        "description": "Get the '
        'current weather in a city.",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": {\n'
        '                "city": {\n'
        '                    "type": '
        '"string",\n'
        "                    "
        '"description": "The city name"\n'
        "                },\n"
        '                "unit": {\n'
        '                    "type": '
        '"string",\n'
        '                    "enum": [\n'
        "                        "
        '"celsius",\n'
        "                        "
        '"fahrenheit"\n'
        "                    ],\n"
        '                    "default": '
        '"celsius"\n'
        "                }\n"
        "            },\n"
        '            "required": [\n'
        '                "city"\n'
        "            ]\n"
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "What's the weather in "
        "Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        '{"name": "get_weather", '
        '"parameters": {"city": '
        '"Paris"}}<|eot_id|>',
        "single_sys_strargs": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
        "\n"
        "Environment: ipython\n"
        "Cutting Knowledge Date: December "
        "2023\n"
        "Today Date: 26 Jul 2024\n"
        "\n"
        "You are a helpful "
        "assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "Given the following functions, please "
        "respond with a JSON for a function "
        "call with its proper arguments that "
        "best answers the given prompt.\n"
        "\n"
        'Respond in the format {"name": '
        'function name, "parameters": '
        "dictionary of argument name and its "
        "value}.Do not use variables.\n"
        "\n"
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_weather",\n'
        '        "description": "Get the '
        'current weather in a city.",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": {\n'
        '                "city": {\n'
        '                    "type": '
        '"string",\n'
        '                    "description": '
        '"The city name"\n'
        "                },\n"
        '                "unit": {\n'
        '                    "type": '
        '"string",\n'
        '                    "enum": [\n'
        '                        "celsius",\n'
        '                        "fahrenheit"\n'
        "                    ],\n"
        '                    "default": '
        '"celsius"\n'
        "                }\n"
        "            },\n"
        '            "required": [\n'
        '                "city"\n'
        "            ]\n"
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_time",\n'
        '        "description": "Current '
        'time.",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": {}\n'
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "What's the weather in "
        "Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        '{"name": "get_weather", "parameters": '
        '{"city": "Paris", "unit": '
        '"celsius"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n'
        "\n"
        '"{\\"temp\\": '
        '22}"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
        "\n"
        "22 degrees.<|eot_id|>",
    },
    "mistralai/Mistral-7B-Instruct-v0.3": {
        "single": '<s>[AVAILABLE_TOOLS] [{"type": "function", '
        '"function": {"name": "get_weather", '
        '"description": "Get the current weather in a '
        'city.", "parameters": {"type": "object", '
        '"properties": {"city": {"type": "string", '
        '"description": "The city name"}, "unit": '
        '{"type": "string", "enum": ["celsius", '
        '"fahrenheit"], "default": "celsius"}}, '
        '"required": '
        '["city"]}}}][/AVAILABLE_TOOLS][INST] What\'s '
        "the weather in Paris?[/INST][TOOL_CALLS] "
        '[{"name": "get_weather", "arguments": {"city": '
        '"Paris"}, "id": "call00001"}]</s>[TOOL_RESULTS] '
        '{"content": sunny, 22C, "call_id": '
        '"call00001"}[/TOOL_RESULTS] It is sunny and 22C '
        "in Paris.</s>",
        "parallel": '<s>[AVAILABLE_TOOLS] [{"type": "function", '
        '"function": {"name": "get_weather", '
        '"description": "Get the current weather in a '
        'city.", "parameters": {"type": "object", '
        '"properties": {"city": {"type": "string", '
        '"description": "The city name"}, "unit": '
        '{"type": "string", "enum": ["celsius", '
        '"fahrenheit"], "default": "celsius"}}, '
        '"required": ["city"]}}}, {"type": "function", '
        '"function": {"name": "get_time", '
        '"description": "Current time.", "parameters": '
        '{"type": "object", "properties": '
        "{}}}}][/AVAILABLE_TOOLS][INST] You are a "
        "helpful assistant.\n"
        "\n"
        "What's the weather in "
        'Paris?[/INST][TOOL_CALLS] [{"name": '
        '"get_weather", "arguments": {"city": '
        '"Paris"}, "id": "call00001"}, {"name": '
        '"get_time", "arguments": {}, "id": '
        '"call00002"}]</s>[TOOL_RESULTS] {"content": '
        'sunny, "call_id": '
        '"call00001"}[/TOOL_RESULTS][TOOL_RESULTS] '
        '{"content": 12:00, "call_id": '
        '"call00002"}[/TOOL_RESULTS] Sunny, and it is '
        "noon.</s>",
        "rounds": "<s>[INST] What's the weather in "
        'Paris?[/INST][TOOL_CALLS] [{"name": '
        '"get_weather", "arguments": {"city": "Paris"}, '
        '"id": "call00001"}]</s>[TOOL_RESULTS] '
        '{"content": sunny, "call_id": '
        '"call00001"}[/TOOL_RESULTS][TOOL_CALLS] '
        '[{"name": "get_time", "arguments": {}, "id": '
        '"call00002"}]</s>[TOOL_RESULTS] {"content": '
        '12:00, "call_id": "call00002"}[/TOOL_RESULTS] '
        'Sunny at noon.</s>[AVAILABLE_TOOLS] [{"type": '
        '"function", "function": {"name": "get_weather", '
        '"description": "Get the current weather in a '
        'city.", "parameters": {"type": "object", '
        '"properties": {"city": {"type": "string", '
        '"description": "The city name"}, "unit": '
        '{"type": "string", "enum": ["celsius", '
        '"fahrenheit"], "default": "celsius"}}, '
        '"required": ["city"]}}}, {"type": "function", '
        '"function": {"name": "get_time", "description": '
        '"Current time.", "parameters": {"type": '
        '"object", "properties": '
        "{}}}}][/AVAILABLE_TOOLS][INST] You are a "
        "helpful assistant.\n"
        "\n"
        'And in Rome?[/INST][TOOL_CALLS] [{"name": '
        '"get_weather", "arguments": {"city": "Rome", '
        '"unit": "celsius"}, "id": '
        '"call00003"}]</s>[TOOL_RESULTS] {"content": '
        'rain, "call_id": "call00003"}[/TOOL_RESULTS] '
        "Rain in Rome.</s>",
        "reasoning_call_final": '<s>[AVAILABLE_TOOLS] [{"type": '
        '"function", "function": {"name": '
        '"get_weather", "description": '
        '"Get the current weather in a '
        'city.", "parameters": {"type": '
        '"object", "properties": {"city": '
        '{"type": "string", "description": '
        '"The city name"}, "unit": '
        '{"type": "string", "enum": '
        '["celsius", "fahrenheit"], '
        '"default": "celsius"}}, '
        '"required": '
        '["city"]}}}][/AVAILABLE_TOOLS][INST] '
        "What's the weather in "
        "Paris?[/INST][TOOL_CALLS] "
        '[{"name": "get_weather", '
        '"arguments": {"city": "Paris"}, '
        '"id": '
        '"call00001"}]</s>[TOOL_RESULTS] '
        '{"content": sunny, "call_id": '
        '"call00001"}[/TOOL_RESULTS] '
        "Sunny.</s>",
        "reasoning_ends_with_call": "<s>[AVAILABLE_TOOLS] "
        '[{"type": "function", '
        '"function": {"name": '
        '"get_weather", "description": '
        '"Get the current weather in a '
        'city.", "parameters": '
        '{"type": "object", '
        '"properties": {"city": '
        '{"type": "string", '
        '"description": "The city '
        'name"}, "unit": {"type": '
        '"string", "enum": ["celsius", '
        '"fahrenheit"], "default": '
        '"celsius"}}, "required": '
        '["city"]}}}][/AVAILABLE_TOOLS][INST] '
        "What's the weather in "
        "Paris?[/INST][TOOL_CALLS] "
        '[{"name": "get_weather", '
        '"arguments": {"city": '
        '"Paris"}, "id": '
        '"call00001"}]</s>',
        "single_sys_strargs": '<s>[AVAILABLE_TOOLS] [{"type": '
        '"function", "function": {"name": '
        '"get_weather", "description": "Get '
        'the current weather in a city.", '
        '"parameters": {"type": "object", '
        '"properties": {"city": {"type": '
        '"string", "description": "The city '
        'name"}, "unit": {"type": "string", '
        '"enum": ["celsius", "fahrenheit"], '
        '"default": "celsius"}}, "required": '
        '["city"]}}}, {"type": "function", '
        '"function": {"name": "get_time", '
        '"description": "Current time.", '
        '"parameters": {"type": "object", '
        '"properties": '
        "{}}}}][/AVAILABLE_TOOLS][INST] You "
        "are a helpful assistant.\n"
        "\n"
        "What's the weather in "
        'Paris?[/INST][TOOL_CALLS] [{"name": '
        '"get_weather", "arguments": '
        '{"city": "Paris", "unit": '
        '"celsius"}, "id": '
        '"abcdefgh1"}]</s>[TOOL_RESULTS] '
        '{"content": {"temp": 22}, '
        '"call_id": '
        '"abcdefgh1"}[/TOOL_RESULTS] 22 '
        "degrees.</s>",
    },
}

TRAINED_SPANS = {
    "openai/gpt-oss-20b": [
        ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>',
        " to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>",
        "Sunny at noon.<|end|>",
        ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": '
        '"Rome", "unit": "celsius"}<|call|>',
        "Rain in Rome.<|return|>",
    ],
    "Qwen/Qwen3-8B": [
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>",
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call><|im_end|>',
        "Sunny at noon.<|im_end|>",
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Rome", "unit": "celsius"}}\n'
        "</tool_call><|im_end|>",
        "<think>\n\n</think>\n\nRain in Rome.<|im_end|>",
    ],
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": [
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Paris\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>",
        "<tool_call>\n<function=get_time>\n</function>\n</tool_call><|im_end|>",
        "Sunny at noon.<|im_end|>",
        "<tool_call>\n"
        "<function=get_weather>\n"
        "<parameter=city>\n"
        "Rome\n"
        "</parameter>\n"
        "<parameter=unit>\n"
        "celsius\n"
        "</parameter>\n"
        "</function>\n"
        "</tool_call><|im_end|>",
        "Rain in Rome.<|im_end|>",
    ],
    "meta-llama/Llama-3.1-8B-Instruct": [
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        '{"name": "get_time", "parameters": {}}<|eot_id|>',
        "Sunny at noon.<|eot_id|>",
        '{"name": "get_weather", "parameters": {"city": "Rome", "unit": "celsius"}}<|eot_id|>',
        "Rain in Rome.<|eot_id|>",
    ],
    "mistralai/Mistral-7B-Instruct-v0.3": [
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": '
        '{"city": "Paris"}, "id": "call00001"}]</s>',
        '[TOOL_CALLS] [{"name": "get_time", "arguments": {}, "id": "call00002"}]</s>',
        " Sunny at noon.</s>",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": '
        '{"city": "Rome", "unit": "celsius"}, "id": '
        '"call00003"}]</s>',
        " Rain in Rome.</s>",
    ],
}

# (model, conversation) pairs the template cannot write, and the DataError each gives
REFUSED = {
    (
        "openai/gpt-oss-20b",
        "parallel",
    ): "message 2: 2 tool calls in one message; gpt-oss's template writes one call per assistant message",
    (
        "meta-llama/Llama-3.1-8B-Instruct",
        "parallel",
    ): "message 2: 2 tool calls in one message; Llama 3.1's template writes one call per message",
    (
        "meta-llama/Llama-2-7b-chat-hf",
        "single",
    ): "the row has 'tools', and Llama-2's chat format has no syntax for tools",
}


def conversation(script, name):
    return script["to_conversation"](copy.deepcopy(CONVERSATIONS[name]))


CASES = [(model, name) for model, cases in EXPECTED.items() for name in cases]


@pytest.mark.parametrize(("model", "name"), CASES, ids=[f"{m.split('/')[1]}-{n}" for m, n in CASES])
def test_matches_the_official_template(tmp_path, model, name):
    script = emitted(tmp_path, model)
    assert script["format_conversation"](**conversation(script, name)) == EXPECTED[model][name]


def test_every_tool_format_has_its_cases():
    assert set(EXPECTED) == set(FORMATS) - {"meta-llama/Llama-2-7b-chat-hf"}
    for model, cases in EXPECTED.items():
        assert {"single", "rounds", "reasoning_call_final", "reasoning_ends_with_call"} <= set(
            cases
        )
        assert ("parallel" in cases) != ((model, "parallel") in REFUSED)


@pytest.mark.parametrize(
    ("model", "name"), list(REFUSED), ids=[m.split("/")[1] for m, _ in REFUSED]
)
def test_what_a_template_cannot_write_is_a_clear_error(tmp_path, model, name):
    script = emitted(tmp_path, model)
    with pytest.raises(script["DataError"]) as error:
        conversation(script, name)
    assert str(error.value).startswith(REFUSED[(model, name)])


def test_arguments_as_a_json_string_or_an_object(tmp_path):
    """Qwen3's template writes a string verbatim; the others read an object (a string is parsed)."""
    row = CONVERSATIONS["single_sys_strargs"]
    qwen3 = emitted(tmp_path, "Qwen/Qwen3-8B")
    assert '"arguments": {"city":"Paris","unit":"celsius"}}' in qwen3["format_conversation"](
        **conversation(qwen3, "single_sys_strargs")
    )
    llama3 = emitted(tmp_path, "meta-llama/Llama-3.1-8B-Instruct")
    text = llama3["format_conversation"](**llama3["to_conversation"](copy.deepcopy(row)))
    assert '"parameters": {"city": "Paris", "unit": "celsius"}}' in text


def tool_row(*messages, tools=("get_weather",)):
    known = {"get_weather": CONVERSATIONS["single"]["tools"][0]}
    return {
        "tools": [known[t] for t in tools],
        "messages": [{"role": "user", "content": "Weather?"}, *messages],
    }


def call(name="get_weather", arguments='{"city": "Paris"}', id="call00001"):
    return {"type": "function", "id": id, "function": {"name": name, "arguments": arguments}}


CALLED = {"role": "assistant", "content": "", "tool_calls": [call()]}
RESULT = {"role": "tool", "tool_call_id": "call00001", "content": "sunny"}
FINAL = {"role": "assistant", "content": "Sunny."}
BAD_ROWS = [
    (tool_row({"role": "assistant", "content": "", "tool_calls": [call("get_time")]}), "message 1, tool call 0: calls 'get_time', which the row's 'tools' do not define (defined: get_weather)"),
    (tool_row({"role": "assistant", "content": "", "tool_calls": [call()]}, tools=()), "message 1, tool call 0: calls 'get_weather', which the row's 'tools' do not define (defined: none)"),
    (tool_row({"role": "assistant", "content": "", "tool_calls": [call(arguments='{"city": ')]}), "message 1, tool call 0: malformed 'arguments': not JSON (Expecting value, column 10)"),
    (tool_row({"role": "assistant", "content": "", "tool_calls": [call(arguments='["Paris"]')]}), "message 1, tool call 0: 'arguments' must be a JSON object, found list"),
    (tool_row(FINAL, RESULT), "message 2: a tool message that answers no call (every call before it has its result)"),
    (tool_row(CALLED, {**RESULT, "tool_call_id": "call99999"}), "message 2: tool_call_id 'call99999' answers no unanswered call of the assistant message before it"),
    (tool_row(CALLED, {**RESULT, "name": "get_time"}), "message 2: a result of 'get_time', but the call it answers is to 'get_weather'"),
    (tool_row(CALLED, FINAL), "message 2: role 'assistant', expected a 'tool' message answering the call to 'get_weather' (one tool message per call)"),
    (tool_row(CALLED, RESULT), "the conversation must end with an assistant reply"),
    (tool_row({"role": "assistant", "content": ""}), "message 1: empty assistant reply"),
    (tool_row({"role": "assistant", "content": None, "tool_calls": "x"}), "message 1: 'tool_calls' must be a list"),
    ({"tools": [{"name": "f"}], "messages": tool_row(FINAL)["messages"]}, 'tools[0]: expected {"type": "function", "function": {"name": ...}}'),
]  # fmt: skip


@pytest.mark.parametrize(("row", "problem"), BAD_ROWS, ids=[p[:40] for _, p in BAD_ROWS])
def test_malformed_tool_rows_name_the_message(tmp_path, row, problem):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    line = json.dumps(row).encode()
    parsed = script["parse_row"](6, line, "train.jsonl", script["to_conversation"])
    assert parsed == (None, f"train.jsonl:7: {problem}")


def test_a_good_tool_row_parses(tmp_path):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    conversation, problem = script["parse_row"](
        0, json.dumps(tool_row(CALLED, RESULT, FINAL)).encode(), "t", script["to_conversation"]
    )
    assert problem == "" and [m["role"] for m in conversation["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


def test_mistral_needs_nine_character_call_ids(tmp_path):
    script = emitted(tmp_path, "mistralai/Mistral-7B-Instruct-v0.3")
    row = tool_row(
        {**CALLED, "tool_calls": [call(id="call_1")]}, {**RESULT, "tool_call_id": "call_1"}, FINAL
    )
    _, problem = script["parse_row"](2, json.dumps(row).encode(), "t", script["to_conversation"])
    assert problem.startswith(
        "t:3: message 1: tool call id 'call_1'; Mistral's template needs an id of 9 letters and digits"
    )


def test_text_beside_a_call_is_refused_where_the_template_drops_it(tmp_path):
    row = tool_row({**CALLED, "content": "Let me check."}, RESULT, FINAL)
    for model in ("meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"):
        script = emitted(tmp_path, model)
        _, problem = script["parse_row"](
            0, json.dumps(row).encode(), "t", script["to_conversation"]
        )
        assert problem.startswith("t:1: message 1: text beside "), problem


@pytest.fixture(scope="module")
def tokenizers():
    require("transformers")
    from mhgen.tiny import build_tokenizer

    return {fmt: build_tokenizer(fmt) for fmt in set(FORMATS.values())}


@pytest.mark.parametrize("model", list(TRAINED_SPANS))
def test_the_loss_covers_calls_and_replies_only(tmp_path, tokenizers, model):
    script = emitted(tmp_path, model)
    tokenizer = tokenizers[FORMATS[model]]
    talk = conversation(script, "rounds")
    example = script["tokenize"](tokenizer, **talk)
    assert tokenizer.decode(example["input_ids"]) == script["format_conversation"](**talk)
    trained = "".join(tokenizer.decode([t]) for t in example["labels"] if t != -100)
    assert trained == "".join(TRAINED_SPANS[model])
    # tool definitions, tool results and the user's turns are context
    for context in ("Get the current weather", "sunny", "12:00", "rain", "And in Rome?"):
        assert context not in trained


def test_dry_run_of_a_tool_row_against_the_official_template(tmp_path):
    """A Qwen3 script run on a tool row, with a tiny tokenizer carrying Qwen3-8B's own template:
    the dry run shows the row and the trained part (the call, then the answer), and the runtime
    check finds the training text equal to what the real template renders, tools included."""
    import ast
    import subprocess
    import sys

    from official_templates import QWEN3_8B_CHAT_TEMPLATE

    require("transformers", "datasets")
    from mhgen.tiny import build_tokenizer

    model = tmp_path / "Qwen3-8B"
    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = QWEN3_8B_CHAT_TEMPLATE
    tokenizer.save_pretrained(model)
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps(CONVERSATIONS["single"]) + "\n", encoding="utf-8")
    config = {
        "base_model": str(model),
        "chat_template": "auto",
        "system_prompt": "",
        "dataset_path": str(data),
    }
    compiled = compile_config(write_config(tmp_path, config))
    script = tmp_path / compiled.plan.script_name
    script.write_text(compiled.text)
    proc = subprocess.run(
        [sys.executable, str(script), "--dry-run"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "chat template check: 1 examples match the tokenizer's own" in proc.stdout
    shown = proc.stdout.split("--- first example, as the model sees it:\n")[1]
    assert shown.startswith("<|im_start|>system\n# Tools\n")
    assert "<tool_response>\n" in shown
    trained = proc.stdout.split(
        "--- the tokens it is trained to generate (the rest is context):\n"
    )[1]
    trained = ast.literal_eval(trained.splitlines()[0])  # printed as a Python literal
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    assert trained.startswith(call)
    assert "get_weather" not in trained[len(call) :]  # the definition and the result are context
    assert trained.endswith("<|im_end|>")
    assert "<tool_response>" not in trained
