"""The demo's character-level tokenizer and its tiny Llama-style model (random init, about 0.86M parameters).

The tokenizer is a `PreTrainedTokenizerFast` over single characters (a BPE with no merges), with
`<pad>`, `<s>` (prepended to every encoded text) and `</s>`; `save_pretrained` writes the standard files,
so `AutoTokenizer.from_pretrained` loads it like any other.
"""

from __future__ import annotations

from pathlib import Path

CHARS = "0123456789+-*=(),.max "
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
MODEL_SIZE = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4}


def char_tokenizer():
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIAL, *dict.fromkeys(CHARS)])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def tiny_config(tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=32, num_key_value_heads=4,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, **MODEL_SIZE)


def init_model(directory: str | Path, *, seed: int = 0) -> Path:
    """Write the tokenizer and a randomly initialised model (seeded) to `directory`."""
    import torch
    from transformers import LlamaForCausalLM

    directory = Path(directory)
    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_config(tokenizer)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
