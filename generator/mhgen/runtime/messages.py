# ---- reading a row of the data as chat messages, and checking them

import json


class DataError(ValueError):
    """A malformed training row; the message names what is wrong."""


# dataset_format -> the rows' shape, in the words the script's messages use
ROW_SHAPES = {
    "messages": "messages",
    "prompt_completion": "prompt + completion",
    "instruction": "instruction + output",
    "sharegpt": "ShareGPT conversations",
}
# ShareGPT's speakers, as chat roles
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}


# a preference pair's shapes (method dpo), in the same words: TRL's with an explicit prompt or
# with the prompt implicit (chosen and rejected whole conversations, as trl-lib's
# ultrafeedback_binarized), and the Hub's question/chosen/rejected and instruction/chosen_response
PAIR_SHAPES = (
    "prompt + chosen + rejected",
    "chosen + rejected",
    "question + chosen + rejected",
    "instruction + chosen_response + rejected_response",
)


def row_shape(row: dict) -> str:
    """Which shape a row has, by its keys (ROW_SHAPES' or PAIR_SHAPES' words)."""
    if "chosen" in row and "rejected" in row:
        for key in ("prompt", "question"):
            if key in row:
                return f"{key} + chosen + rejected"
        return "chosen + rejected"
    if "instruction" in row and "chosen_response" in row and "rejected_response" in row:
        return PAIR_SHAPES[3]
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt + completion"
    if "instruction" in row and "output" in row:
        return "instruction + output"
    if "conversations" in row:
        return "ShareGPT conversations"
    keys = ", ".join(sorted(row)) or "none"
    raise DataError(
        f"keys {keys}: expected messages, prompt + completion, instruction + output, or "
        "conversations (ShareGPT)"
    )


def row_messages(row: dict, dataset_format: str) -> list[dict]:
    """A row's chat messages, read as ``dataset_format`` says (auto: each row by its keys)."""
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, found {type(row).__name__}")
    shape = row_shape(row) if dataset_format == "auto" else ROW_SHAPES[dataset_format]
    if shape in PAIR_SHAPES:
        raise DataError(
            f'a preference pair ({shape}): SFT trains on conversations; set "method": "dpo" '
            "in the config to train on pairs"
        )
    if shape == "messages":
        if "messages" not in row:
            raise DataError("missing key 'messages' (dataset_format is 'messages')")
        return row["messages"]
    if shape == "prompt + completion":
        return [user(row, "prompt"), {"role": "assistant", "content": row["completion"]}]
    if shape == "instruction + output":
        return [user(row, "instruction", "input"), {"role": "assistant", "content": row["output"]}]
    return from_sharegpt(row["conversations"])


def user(row: dict, key: str, extra: str = "") -> dict:
    """The user message of a row's ``key``, with its ``extra`` field after a blank line."""
    text = row[key]
    if extra and row.get(extra):
        text = f"{text}\n\n{row[extra]}"
    return {"role": "user", "content": text}


def from_sharegpt(turns) -> list[dict]:
    """ShareGPT's [{"from": "system" | "human" | "gpt", "value": text}, ...] as chat messages."""
    if not isinstance(turns, list):
        raise DataError('\'conversations\' must be a list of {"from", "value"} turns')
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"conversations[{i}]: expected an object with 'from' and 'value'")
        if turn["from"] not in SHAREGPT_ROLES:
            raise DataError(
                f"conversations[{i}]: from {turn['from']!r}, expected system, human or gpt"
            )
        messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]})
    return messages


def row_tools(row: dict) -> list[dict]:
    """A row's "tools": OpenAI-style function definitions (datasets often keep them as one JSON
    string), checked."""
    tools = row.get("tools") or []
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"'tools' is a string but not JSON ({exc.msg}, column {exc.colno})"
            ) from None
    check_tools(tools)
    return tools


def check_tools(tools: list) -> dict[str, dict]:
    """The functions of a row's "tools", by name."""
    if not isinstance(tools, list):
        raise DataError("'tools' must be a list of function definitions")
    functions = {}
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise DataError(
                f"tools[{i}]: expected " + '{"type": "function", "function": {"name": ...}}'
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise DataError(f"tools[{i}]: the function has no 'name'")
        if name in functions:
            raise DataError(f"tools[{i}]: a second function named {name!r}")
        if not isinstance(function.get("description", ""), str):
            raise DataError(f"tools[{i}]: 'description' must be a string")
        if not isinstance(function.get("parameters", {}), dict):
            raise DataError(f"tools[{i}]: 'parameters' must be a JSON schema object")
        functions[name] = function
    return functions


def call_arguments(call: dict) -> dict:
    """A tool call's arguments as an object (the data may give them as a JSON string)."""
    arguments = call["function"]["arguments"]
    return json.loads(arguments) if isinstance(arguments, str) else arguments


def check_calls(i: int, calls: list, functions: dict) -> None:
    """The tool calls of assistant message ``i``: each names a function of the row's tools and
    gives its arguments as an object or as a JSON string of one."""
    if not isinstance(calls, list):
        raise DataError(f"message {i}: 'tool_calls' must be a list")
    for j, call in enumerate(calls):
        where = f"message {i}, tool call {j}"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise DataError(
                f"{where}: expected "
                + '{"type": "function", "function": {"name": ..., "arguments": ...}}'
            )
        if function.get("name") not in functions:
            defined = ", ".join(functions) or "none"
            raise DataError(
                f"{where}: calls {function.get('name')!r}, which the row's 'tools' do not "
                f"define (defined: {defined})"
            )
        if "arguments" not in function:
            raise DataError(f"{where}: no 'arguments'")
        try:
            arguments = call_arguments(call)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: malformed 'arguments': not JSON ({exc.msg}, column {exc.colno})"
            ) from None
        if not isinstance(arguments, dict):
            raise DataError(
                f"{where}: 'arguments' must be a JSON object, found {type(arguments).__name__}"
            )
        if not isinstance(call.get("id", ""), str):
            raise DataError(f"{where}: 'id' must be a string")


def match_tool_result(i: int, message: dict, unanswered: list) -> None:
    """Tool message ``i`` answers one of the ``unanswered`` calls before it: the one its
    tool_call_id names, else the first; that call is taken off the list."""
    for key in ("tool_call_id", "name"):
        if not isinstance(message.get(key, ""), str):
            raise DataError(f"message {i}: {key!r} must be a string")
    call = unanswered[0]
    if "tool_call_id" in message:
        matching = [c for c in unanswered if c.get("id") == message["tool_call_id"]]
        if not matching:
            raise DataError(
                f"message {i}: tool_call_id {message['tool_call_id']!r} answers no unanswered "
                "call of the assistant message before it"
            )
        call = matching[0]
    if message.get("name", call["function"]["name"]) != call["function"]["name"]:
        raise DataError(
            f"message {i}: a result of {message['name']!r}, but the call it answers is to "
            f"{call['function']['name']!r}"
        )
    unanswered.remove(call)


def check_messages(messages: list, tools: list[dict], system_roles: tuple[str, ...]) -> list[dict]:
    """The messages, checked and tidied. After an optional system message (a role of
    ``system_roles``): user, assistant, user, ..., ending with an assistant message. An assistant
    message with tool_calls is followed by one tool message answering each call, then by the
    assistant again (unless it ends the conversation). An assistant message that only calls
    tools gets content "", as the official templates read it."""
    if not isinstance(messages, list) or not messages:
        raise DataError("'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"message {i}: expected an object, found {type(message).__name__}")
        if "role" not in message:
            raise DataError(f"message {i}: no 'role' (system, user, assistant or tool)")
        calls = message.get("tool_calls")
        if calls is not None and message["role"] != "assistant":
            raise DataError(f"message {i}: only an assistant message has 'tool_calls'")
        if not isinstance(message.get("content"), str) and not (
            calls and message.get("content") is None
        ):
            raise DataError(f"message {i}: expected a string 'content'")
        for key in ("thinking", "reasoning_content"):
            if message.get(key) is None:
                continue  # absent, or null: no reasoning
            if message["role"] != "assistant" or not isinstance(message[key], str):
                raise DataError(f"message {i}: {key!r} must be a string on an assistant message")
    functions = {tool["function"]["name"]: tool["function"] for tool in tools}
    first = 1 if messages[0]["role"] in system_roles else 0
    expected, unanswered = "user", []
    for i, message in enumerate(messages[first:], start=first):
        if message["role"] == "tool" and unanswered:
            match_tool_result(i, message, unanswered)
            expected = "assistant"
            continue
        if message["role"] == "tool":
            raise DataError(
                f"message {i}: a tool message that answers no call (every call before it has "
                "its result)"
            )
        if unanswered:
            raise DataError(
                f"message {i}: role {message['role']!r}, expected a 'tool' message answering "
                f"the call to {unanswered[0]['function']['name']!r} (one tool message per call)"
            )
        if message["role"] != expected:
            raise DataError(
                f"message {i}: role {message['role']!r}, expected {expected!r} (after an "
                "optional system message, user and assistant alternate)"
            )
        if expected == "assistant":
            check_calls(i, message.get("tool_calls") or [], functions)
            unanswered = list(message.get("tool_calls") or [])
            if not unanswered and not (message["content"] or "").strip():
                raise DataError(f"message {i}: empty assistant reply")
            expected = "user"
        else:
            expected = "assistant"
    if len(messages) == first or messages[-1]["role"] != "assistant":
        raise DataError("the conversation must end with an assistant reply")
    for message in messages:
        if message.get("content") is None:
            message["content"] = ""
        if not message.get("tool_calls"):
            message.pop("tool_calls", None)
    return messages


def with_thinking(messages: list[dict]) -> list[dict]:
    """An assistant's reasoning as "thinking", as gpt-oss names it (Qwen's "reasoning_content"
    too); null reasoning dropped, as the official templates read it."""
    for message in messages:
        if "reasoning_content" in message:
            reasoning = message.pop("reasoning_content")
            if reasoning is not None:
                message.setdefault("thinking", reasoning)
        if message.get("thinking", "") is None:
            del message["thinking"]
    return messages
