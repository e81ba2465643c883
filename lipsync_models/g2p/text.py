"""Text normalisation for the speech decoders: what a user types -> the lower-case word list
(case, punctuation, digits, ordinals, decimals, currency and a few symbols spelled out)."""

from __future__ import annotations

import re

# --- numbers --------------------------------------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL_WORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                 "nine": "ninth", "twelve": "twelfth"}


def _under_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_words(n: int) -> list[str]:
    """Cardinal number as words: ``1205 -> ["one", "thousand", "two", "hundred", "five"]``."""
    if n < 0:
        return ["minus"] + number_words(-n)
    if n < 1000:
        return _under_thousand(n)
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return number_words(n // scale) + [name] + (number_words(rest) if rest else [])
    return _under_thousand(n)  # unreachable


def _year_words(n: int) -> list[str]:
    """Four-digit years the way they are read: 1984 -> nineteen eighty four, 2024 -> twenty twenty
    four, 2005 -> two thousand five, 1900 -> nineteen hundred."""
    hi, lo = divmod(n, 100)
    if 2000 <= n <= 2009:
        return number_words(n)
    if lo == 0:
        return _under_thousand(hi) + ["hundred"]
    return _under_thousand(hi) + (["oh", _ONES[lo]] if lo < 10 else _under_thousand(lo))


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL_WORD:
        last = _ORDINAL_WORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return words[:-1] + [last]


def _digits_words(token: str) -> list[str]:
    """Words for a token made of digits with optional separators, sign, decimals, ordinal suffix."""
    m = re.fullmatch(r"(\d+)(st|nd|rd|th)", token)
    if m:
        return _ordinal(number_words(int(m.group(1))))
    m = re.fullmatch(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?", token)
    if m:
        whole = m.group(1).replace(",", "")
        if len(whole) == 4 and "," not in m.group(1) and not m.group(2) and 1100 <= int(whole) <= 2099:
            words = _year_words(int(whole))
        elif len(whole) > 1 and whole.startswith("0"):
            words = [_ONES[int(c)] for c in whole]  # "007": read digit by digit
        else:
            words = number_words(int(whole))
        if m.group(2):
            words += ["point"] + [_ONES[int(c)] for c in m.group(2)]
        return words
    out: list[str] = []  # digits mixed with other things (e.g. "4x4" was split before): digit by digit
    for c in token:
        if c.isdigit():
            out.append(_ONES[int(c)])
    return out


# --- text normalisation ---------------------------------------------------------------------

_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}
_CURRENCY = {"$": "dollars", "€": "euros", "£": "pounds"}


def normalize_text(text: str) -> list[str]:
    """Lower-case words a decoder can look up.

    Case is folded, punctuation dropped (apostrophes inside words kept: ``don't``), hyphens and
    slashes split words, numbers spelled out (``42`` -> forty two, ``3.5`` -> three point five,
    ``21st`` -> twenty first, ``1984`` -> nineteen eighty four, ``$5`` -> five dollars), letters
    glued to digits separated (``X4`` -> x four), ``&``/``%``/``+``/``@`` spoken.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text: text must be a str, got {type(text).__name__}.")
    t = text.replace("\u2019", "'").replace("\u2018", "'")
    # currency before a number: "$5" -> "5 dollars"
    for sym, word in _CURRENCY.items():
        t = re.sub(re.escape(sym) + r"\s*(\d[\d,]*(?:\.\d+)?)", lambda m, w=word: f" {m.group(1)} {w} ", t)
    for sym, word in _SYMBOLS.items():
        t = t.replace(sym, word)
    # split letters from digits ("x4" -> "x 4", "4x" -> "4 x") but keep ordinals ("21st")
    t = re.sub(r"(?<=[A-Za-z])(?=\d)", " ", t)
    t = re.sub(r"(\d)(?!(?:st|nd|rd|th)\b)(?=[A-Za-z])", r"\1 ", t)
    words: list[str] = []
    for token in re.split(r"[\s\-\u2013\u2014/_]+", t):
        token = token.strip()
        if not token:
            continue
        if re.search(r"\d", token):
            token = token.strip(".,;:!?\"'()[]{}<>")
            token = re.sub(r"[^0-9a-zA-Z.,]", "", token)
            words += _digits_words(token.lower())
            continue
        token = re.sub(r"[^A-Za-z']", "", token).strip("'").lower()
        if token:
            words.append(token)
    return words
