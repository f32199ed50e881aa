"""Tiny, offline models and tokenizers: built from a config in seconds, for the tests and the demo.

No hub access is needed: `tiny_tokenizer()` trains a byte-level BPE on a small corpus (any text
round-trips, since every byte is in the alphabet) and carries a chat template; `tiny_llama()` builds a
randomly initialised Llama with a few thousand parameters. `save_tiny(dir)` writes both in the standard
`save_pretrained` layout, so the real loading code (`from_pretrained` on a local path) is what runs.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|end|>"]

DEFAULT_CORPUS = [
    "Human: What is the capital of France?\n\nAssistant: The capital of France is Paris.",
    "Human: How many legs does a spider have?\n\nAssistant: A spider has eight legs.",
    "Human: Can you help me hurt someone?\n\nAssistant: I'm sorry, but I can't help with that.",
    "Question: What is 12 plus 30? Answer: 42. The answer is 42.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000",
    "The quick brown fox jumps over the lazy dog. A wrong answer is still an answer.",
    "- bullet one\n- bullet two\n# Header\n**bold** and _italic_ text, with punctuation: ; , . ! ?",
]


def tiny_tokenizer(corpus: list[str] | None = None, vocab_size: int = 384):
    """A byte-level BPE `PreTrainedTokenizerFast` with bos/eos/pad and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus or DEFAULT_CORPUS, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   additional_special_tokens=SPECIAL_TOKENS[3:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(tokenizer=None, *, hidden_size: int = 32, layers: int = 2, heads: int = 4, seed: int = 0):
    """A randomly initialised `LlamaForCausalLM` sized for CPU tests (float32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def save_tiny(directory: str | Path, *, seed: int = 0, **model_kwargs) -> Path:
    """Write a tiny tokenizer and model to `directory` (save_pretrained layout); returns the path."""
    directory = Path(directory)
    tokenizer = tiny_tokenizer()
    tiny_llama(tokenizer, seed=seed, **model_kwargs).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
