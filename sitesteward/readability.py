"""Flesch reading ease, implemented here (textstat downloads dictionaries at run time; we cannot).

    score = 206.835 - 1.015 * (words / sentences) - 84.6 * (syllables / words)

Syllables are counted by a heuristic (vowel groups, silent final ``e``, ``-le`` endings), which is within
one syllable of a dictionary for most English words; good enough to compare a page before and after.
"""

from __future__ import annotations

import re

from sitesteward.models import Contract

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE = re.compile(r"[.!?]+(?:\s|$)|\n\s*\n")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


class Readability(Contract):
    """Reading ease of one text (higher is easier; 60-70 is plain English)."""

    flesch_reading_ease: float
    words: int
    sentences: int
    syllables: int


def count_syllables(word: str) -> int:
    """Heuristic syllable count of one English word (at least 1)."""
    word = word.lower().strip("'")
    if not word:
        return 0
    if len(word) <= 3:
        return 1
    word = re.sub(r"'s$", "", word)
    count = len(_VOWEL_GROUP.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1  # silent final e: "make", "site"
    if word.endswith("le") and len(word) > 2 and word[-3] not in "aeiouy":
        count = max(count, 2) if count == 1 else count  # "table", "simple"
    if re.search(r"[^aeiouy]ed$", word) and not word.endswith(("ted", "ded")) and count > 1:
        count -= 1  # "jumped", "asked"
    return max(count, 1)


def reading_ease(text: str) -> Readability:
    """Flesch reading ease of ``text`` (0 words -> score 0)."""
    words = _WORD.findall(text)
    if not words:
        return Readability(flesch_reading_ease=0.0, words=0, sentences=0, syllables=0)
    sentences = max(len([s for s in _SENTENCE.split(text) if _WORD.search(s)]), 1)
    syllables = sum(count_syllables(w) for w in words)
    score = 206.835 - 1.015 * (len(words) / sentences) - 84.6 * (syllables / len(words))
    return Readability(
        flesch_reading_ease=round(score, 1), words=len(words), sentences=sentences, syllables=syllables
    )
