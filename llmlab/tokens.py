"""How a single token is shown to a person.

Decoding one token of a byte-level tokenizer can yield half of a UTF-8 character, which prints
as U+FFFD. Views show such a token as its bytes (``<0xE2>``) so that distinct tokens never look
alike; every other token is shown as the text it decodes to.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _unicode_to_byte() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_text(tokenizer: Any, token_id: int) -> str:
    """The text of one token, or its bytes where it is only part of a character."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(token_id) or ""
    table = _unicode_to_byte()
    if piece and all(ch in table for ch in piece):
        return "".join(f"<0x{table[ch]:02X}>" for ch in piece)
    return text


def token_texts(tokenizer: Any, token_ids: list[int]) -> list[str]:
    return [token_text(tokenizer, i) for i in token_ids]
