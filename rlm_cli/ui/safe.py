"""Text from a run made safe to write to a terminal.

Everything a run produces (cell output, exceptions, the root model's prose, sub-call replies, the
answer) is attacker-controlled: the model reads hostile inputs and its code prints whatever it
likes. Written raw, that text could set the window title, write the clipboard (OSC 52), clear
the screen, move the cursor to overwrite lines, or reorder what is shown (bidi overrides).

The rule, applied by `terminal_safe`:

- A complete escape sequence is removed whole: CSI (`ESC [` ... final byte), OSC (`ESC ]` ...
  ended by BEL or `ESC \\`), DCS, SOS, PM and APC strings (`ESC P`, `ESC X`, `ESC ^`, `ESC _`
  ... ended by `ESC \\`), and the short `ESC` sequences (`ESC 7`, `ESC c`, `ESC ( B`, ...).
- Any other control character is shown, not obeyed: C0 controls and DEL in caret notation (`^[`
  for a lone ESC, `^G` for BEL, `^H`, `^M`, `^?`), C1 controls (U+0080-U+009F, including the
  8-bit forms of CSI, OSC and ST) and the bidi embedding, override and isolate controls
  (U+202A-U+202E, U+2066-U+2069) as `<U+XXXX>`.
- Newline and tab are kept, and CR LF becomes LF (a CR just before LF overwrites nothing).
  All other text (accents, CJK, emoji with their joiners) is kept as it is.

A sequence that is cut off or holds a control character is not removed: its introducer is shown
as `^[` and the rest as ordinary text, which a terminal cannot act on.
"""

from __future__ import annotations

import re

_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
# The fast path: most text has none of these, and one search tells (hundreds of MB/s).
_ANY_CONTROL = re.compile(f"[{_CONTROLS}]")

# Sequence bodies exclude every control character and quantifiers are possessive, so a match
# attempt never runs past the next control: the substitution is linear in the text's length,
# whatever is left unterminated. The pattern starts with the control class (then checks which
# control it was by lookbehind) so the regex engine skips ordinary text as fast as the search.
_STRING_BODY = r"[^\x00-\x1f\x7f-\x9f]*+"
_SEQUENCE = re.compile(
    f"[{_CONTROLS}]"
    r"(?:(?<=\x1b)(?:"
    r"\[[\x30-\x3f]*+[\x20-\x2f]*+[\x40-\x7e]"  # CSI: parameters, intermediates, final byte
    rf"|\]{_STRING_BODY}(?:\x07|\x1b\\)"  # OSC, ended by BEL or ST
    rf"|[PX^_]{_STRING_BODY}\x1b\\"  # DCS, SOS, PM, APC, ended by ST
    # nF (ESC ( B ...) and the two-character forms; the introducers above are left out, so an
    # unfinished string or CSI shows its ESC instead of vanishing.
    r"|[\x20-\x2f]++[\x30-\x7e]|[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]"
    r")|(?<=\r)\n)?"
)


def _placeholder(code: int) -> str:
    if code < 0x20 or code == 0x7F:
        return "^" + chr(code ^ 0x40)
    return f"<U+{code:04X}>"


_PLACEHOLDERS = {
    chr(code): _placeholder(code)
    for code in [
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
    if code not in (0x09, 0x0A)
}
_PLACEHOLDERS["\r\n"] = "\n"


def _replace(match: re.Match[str]) -> str:
    # A sequence (two characters or more, CR LF aside) is dropped; a lone control is shown.
    return _PLACEHOLDERS.get(match.group(), "")


def terminal_safe(text: str) -> str:
    """`text` with escape sequences removed and other control characters made visible; newline
    and tab kept. Text without control characters is returned as it is (the same object)."""
    if _ANY_CONTROL.search(text) is None:
        return text
    return _SEQUENCE.sub(_replace, text)


# In JSON text (dumped with ensure_ascii=False), the controls json leaves raw: DEL, C1 and bidi.
_JSON_RAW = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def json_safe(text: str) -> str:
    """JSON text with every control character escaped (`\\u009b`): the same value, but nothing a
    terminal acts on when a `--json` result is printed to one."""
    return _JSON_RAW.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
