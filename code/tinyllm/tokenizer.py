"""字节级分词器：不用下载词表，任何语言（包括中文）都能无损往返。

每个 UTF-8 字节是一个 token（id 0–255），另加三个特殊 token。一个汉字是 3 个字节，
所以同一句中文，这里的 token 数比 BPE 分词器（如 Llama 3 的 128K 词表）多出数倍——
这正是真实分词器要做 BPE 合并的原因；本书的小模型为了零依赖而接受这个代价。

:func:`to_hf_tokenizer` 把同一套规则表达成 Hugging Face ``tokenizers`` 的
ByteLevel BPE（没有合并规则），存进模型目录后，``transformers`` 与 vLLM 都能直接加载。
"""

from __future__ import annotations

from dataclasses import dataclass


# --8<-- [start:tokenizer]
@dataclass(frozen=True)
class ByteTokenizer:
    bos_token_id: int = 256
    eos_token_id: int = 257
    pad_token_id: int = 258

    @property
    def vocab_size(self) -> int:
        return 259

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [self.bos_token_id, *ids] if add_bos else ids

    def decode(self, ids: list[int]) -> str:
        """跳过特殊 token；被截断的多字节字符替换为 U+FFFD，而不是抛异常。"""
        data = bytes(i for i in ids if i < 256)
        return data.decode("utf-8", errors="replace")

    # --8<-- [end:tokenizer]


SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>")


def to_hf_tokenizer(tok: ByteTokenizer | None = None):
    """返回与 :class:`ByteTokenizer` 编码完全一致的 ``PreTrainedTokenizerFast``。"""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = tok or ByteTokenizer()
    # ByteLevel 把每个字节映射到一个可打印字符；按字节值排 id，与 ByteTokenizer 对齐。
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    mapping = _bytes_to_unicode()
    vocab = {mapping[b]: b for b in range(256)}
    assert set(vocab) == set(byte_chars)
    for offset, name in enumerate(SPECIAL_TOKENS):
        vocab[name] = 256 + offset
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)]
    )
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 的字节→可打印字符表（ByteLevel 预分词器使用的同一张表）。"""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table
