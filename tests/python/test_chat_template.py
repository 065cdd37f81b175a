"""The engine's chat-template rendering (minijinja, `crates/engine/src/chat_template.rs`,
driven through the `render_chat` example) against Python `jinja2` configured the way Hugging
Face `transformers` renders chat templates: an `ImmutableSandboxedEnvironment` with
`trim_blocks` and `lstrip_blocks`, a `raise_exception` function, and the variables
`messages`, `add_generation_prompt`, `bos_token`, `eos_token`.

Templates: SmolLM2's (as written into an imported model directory), plain ChatML, a
LLaMA-3-style template (BOS token, header tokens, `strip()`), and a Mistral-style template
that folds the system message into the first user turn and rejects bad role orders with
`raise_exception`. Conversations: multi-turn, with and without a system message.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parents[2]
RENDER_CHAT = REPO / "target" / "debug" / "examples" / "render_chat"

SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = """{{ bos_token }}
{% for message in messages %}
    {% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}
    {{ content }}
{% endfor %}
{% if add_generation_prompt %}
    {{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{% endif %}
"""
MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'].strip() + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'].strip() + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- endif %}
{%- endfor %}
"""
TEMPLATES = {"smollm2": SMOLLM2, "chatml": CHATML, "llama3": LLAMA3, "mistral": MISTRAL}

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
TURNS = [
    {"role": "user", "content": "Hi there!"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "  What's 2 + 2?\nAnswer with a number.  "},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "Ünïcödé — 東京 🚀, \"quotes\" and {{ braces }}"},
]
CONVERSATIONS = {
    "single-turn": TURNS[:1],
    "multi-turn": TURNS,
    "system-single-turn": [SYSTEM, *TURNS[:1]],
    "system-multi-turn": [SYSTEM, *TURNS],
}


def jinja2_render(template: str, messages: list, add_generation_prompt: bool) -> str:
    """Hugging Face's way of rendering a chat template."""

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt,
        bos_token="<s>", eos_token="</s>",
    )


def engine_render(tmp_path: Path, template: str, messages: list,
                  add_generation_prompt: bool) -> subprocess.CompletedProcess:
    if not RENDER_CHAT.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "gateway-engine", "--example",
                        "render_chat"], cwd=REPO, check=True)
    path = tmp_path / "template.jinja"
    path.write_text(template)
    request = {"messages": messages, "add_generation_prompt": add_generation_prompt,
               "bos_token": "<s>", "eos_token": "</s>"}
    return subprocess.run([str(RENDER_CHAT), str(path)], input=json.dumps(request),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("generation_prompt", [True, False])
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_engine_renders_like_jinja2(tmp_path, name, conversation, generation_prompt):
    template, messages = TEMPLATES[name], CONVERSATIONS[conversation]
    want = jinja2_render(template, messages, generation_prompt)
    done = engine_render(tmp_path, template, messages, generation_prompt)
    assert done.returncode == 0, done.stderr
    assert done.stdout == want


def test_raise_exception_rejects_like_jinja2(tmp_path):
    messages = [TURNS[1], TURNS[0]]  # assistant first: the Mistral template refuses it
    with pytest.raises(TemplateError, match="roles must alternate"):
        jinja2_render(MISTRAL, messages, False)
    done = engine_render(tmp_path, MISTRAL, messages, False)
    assert done.returncode != 0
    assert "roles must alternate" in done.stderr


def test_imported_template_is_written_verbatim(tmp_path):
    """The tiny model's GGUF carries a ChatML template; its import writes it verbatim."""
    import sys

    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_llama.py"),
                    str(tmp_path)], check=True, capture_output=True)
    out = tmp_path / "out"
    subprocess.run([str(REPO / "target" / "debug" / "gateway"), "models", "import",
                    str(tmp_path / "tiny-llama.gguf"), "--out", str(out)],
                   check=True, capture_output=True)
    assert (out / "chat_template.jinja").read_text() == CHATML
