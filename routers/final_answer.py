"""The final answer inside a model's text, normalised so that answers can be compared.

    final_answer("... so the answer is (C).")          -> "C"
    final_answer("12 * 7 = 84, so he has 84 apples.")   -> "84"
    final_answer("Paris.")                              -> "paris"
    final_answer("<a long free-text essay>")            -> None (nothing to vote on)

In order: an explicit multiple-choice letter ("answer is (C)", "Answer: C", a lone "C." line),
else the last number (thousands separators dropped, "1.50" == "1.5"), else a short answer
(at most `SHORT` characters) lowercased without punctuation.
"""

from __future__ import annotations

import re

__all__ = ["SHORT", "final_answer"]

SHORT = 40
_LETTER = re.compile(
    r"(?:(?i:answer)\s*(?:(?i:is)|:)?\s*(?:(?i:option)\s*)?\(?([A-J])\)?(?![A-Za-z]))"
    r"|(?:^\s*\(?([A-J])[).:]?\s*$)",
    re.MULTILINE,
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_PUNCT = re.compile(r"[^\w\s]")


def final_answer(text: str) -> str | None:
    """The normalised final answer of `text` (module docstring), or None."""
    letters: list[str] = [str(a or b) for a, b in _LETTER.findall(text)]
    if letters:
        return letters[-1].upper()
    numbers = _NUMBER.findall(text)
    if numbers:
        return _number(numbers[-1])
    short = " ".join(_PUNCT.sub(" ", text).lower().split())
    return short if 0 < len(short) <= SHORT else None


def _number(raw: str) -> str:
    plain = raw.replace(",", "")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return plain or "0"
