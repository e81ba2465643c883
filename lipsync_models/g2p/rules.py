"""Letter-to-sound rules written for this pack: context rules in the style of the classic NRL rule
sets, checked against the dictionary."""

from __future__ import annotations

import re

from .dictionary import VOWELS

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
