#!/usr/bin/env python3
"""Write src/model/clip_text/tables.rs: the character tables of ftfy 6.3.1 that imgdb's port of
`ftfy.fix_text` needs (src/model/clip_text/ftfy.rs), read from ftfy itself so they cannot drift.

    python3 -m venv .cache/venv-text      # as scripts/fixtures/README.md says
    .cache/venv-text/bin/pip install -r scripts/fixtures/requirements-text.txt
    .cache/venv-text/bin/python scripts/gen-clip-text-tables.py
    git diff --exit-code src/model/clip_text/tables.rs   # unchanged, unless ftfy changed

What is written:
- the ten single-byte encodings `fix_encoding` tries (`chardata.CHARMAP_ENCODINGS`, in order),
  as the characters their bytes 0x80-0xFF decode to (ftfy's "sloppy" codecs included);
- the bytes strict windows-1252 leaves undefined;
- `badness.BADNESS_RE` and the parts of `chardata.UTF8_DETECTOR_RE`, turned from Python's
  verbose syntax into patterns for the Rust `regex` crate: verbose white space and comments
  dropped (checked by comparing Python's parse of both forms), every non-ASCII character
  written `\\x{..}`, and Python's Unicode `\\s` and `\\w` spelt out (`str.isspace()`'s
  characters; letters, numbers and `_`), since the Rust classes differ slightly.

The HTML entity table comes from the `htmlize` crate (the WHATWG list, which equals
`html.entities.html5`), the width map from NFKC at run time; the short tables (ligatures,
quotes, control characters) are written out in ftfy.rs with ftfy's comments.
"""

from __future__ import annotations

import os
import re
import sys

try:  # Python 3.11+
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]

import ftfy
from ftfy import badness, chardata

OUT = os.path.join(os.path.dirname(__file__), "..", "src", "model", "clip_text", "tables.rs")

PY_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def deverbose(pattern: str) -> str:
    """Drop the white space and comments that re.VERBOSE ignores (outside classes)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            # a ']' right after '[' or '[^' is literal
            if pattern[i + 1 : i + 2] == "]":
                out.append("]")
                i += 1
        elif c == "#":
            while i < len(pattern) and pattern[i] != "\n":
                i += 1
            continue
        elif not c.isspace():
            out.append(c)
        i += 1
    plain = "".join(out)
    same = str(sre_parse.parse(pattern, re.VERBOSE)) == str(sre_parse.parse(plain, 0))
    assert same, "deverbose changed the pattern's meaning"
    return plain


def class_of(chars: str) -> str:
    """A regex character class holding exactly `chars` (ranges written out)."""
    return "[" + "".join(rust_escape_char(c, in_class=True) for c in sorted(set(chars))) + "]"


def rust_escape_char(c: str, in_class: bool) -> str:
    if " " < c < "\x7f" and (not in_class or c not in "[]\\^-&~"):
        return c
    if c == " ":
        return " "
    return "\\x{%X}" % ord(c)


def to_rust_regex(pattern: str) -> str:
    """Python regex (non-verbose) to the Rust regex crate's syntax."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            esc = pattern[i + 1]
            if esc == "s":
                assert not in_class, "\\s inside a class"
                out.append(class_of(PY_SPACE))
            elif esc == "w":
                assert not in_class, "\\w inside a class"
                out.append(r"[\p{L}\p{N}_]")
            elif esc == "x":
                out.append("\\x{%s}" % pattern[i + 2 : i + 4])
                i += 2
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        if ord(c) > 0x7E or ord(c) < 0x20:
            out.append("\\x{%X}" % ord(c))
        else:
            # Rust reads '--', '&&' and '~~' in a class as set operations
            assert not (in_class and pattern[i : i + 2] in ("--", "&&", "~~")), pattern[i - 5 : i + 5]
            out.append(c)
        i += 1
    return "".join(out)


def rust_str(s: str) -> str:
    """A Rust raw string literal."""
    assert '"#' not in s
    return 'r#"' + s + '"#'


def rust_chars(s: str) -> str:
    """A Rust string literal of arbitrary characters, each non-printable one escaped."""
    body = "".join(c if " " < c < "\x7f" and c not in '"\\' else "\\u{%X}" % ord(c) for c in s)
    return '"' + body + '"'


def charmaps() -> list[str]:
    rows = []
    for encoding in chardata.CHARMAP_ENCODINGS:
        sloppy = encoding.startswith("sloppy")
        low = bytes(range(0x80)).decode(encoding)
        expected_low = "".join(chr(b) for b in range(0x80))
        if sloppy:
            expected_low = expected_low[:0x1A] + "\ufffd" + expected_low[0x1B:]
        assert low == expected_low, encoding
        high = bytes(range(0x80, 0x100)).decode(encoding)
        assert len(high) == 128, encoding
        for byte, char in zip(range(0x80, 0x100), high):
            assert char.encode(encoding) == bytes([byte]), (encoding, byte)
        # laid out as rustfmt lays it out, so that `cargo fmt` leaves the file alone
        rows += ["    (", f"        {rust_chars(encoding)},", f"        {str(sloppy).lower()},"]
        rows += [f"        {rust_chars(high)},", "    ),"]
    return rows


def windows_1252_undefined() -> list[int]:
    undefined = []
    for b in range(0x80, 0xA0):
        try:
            bytes([b]).decode("windows-1252")
        except UnicodeDecodeError:
            undefined.append(b)
    return undefined


def utf8_detector() -> tuple[str, str]:
    clues = chardata.UTF8_CLUES
    cont = "[" + clues["utf8_continuation"] + "]"
    body = (
        f"(?:[{clues['utf8_first_of_2']}]{cont}"
        f"|[{clues['utf8_first_of_3']}]{cont}{{2}}"
        f"|[{clues['utf8_first_of_4']}]{cont}{{3}})+"
    )
    # Same meaning as ftfy's regex, less the look-behind that ftfy.rs checks by hand.
    verbose = chardata.UTF8_DETECTOR_RE.pattern
    lookbehind = "(?<! [" + clues["utf8_continuation_strict"] + "])"
    assert verbose.strip().startswith(lookbehind), "UTF8_DETECTOR_RE changed shape"
    strict = "[" + clues["utf8_continuation_strict"] + "]"
    return to_rust_regex(body), to_rust_regex(strict)


def render() -> str:
    assert ftfy.__version__ == "6.3.1", ftfy.__version__
    badness_re = to_rust_regex(deverbose(badness.BADNESS_RE.pattern))
    detector, strict = utf8_detector()
    undefined = ", ".join("0x%02X" % b for b in windows_1252_undefined())
    lines = [
        "//! Character tables of ftfy 6.3.1, for the port in `ftfy.rs`.",
        "//!",
        "//! Generated by `scripts/gen-clip-text-tables.py` from ftfy itself: do not edit by hand.",
        "",
        "/// The single-byte encodings `fix_encoding` tries, in ftfy's order",
        "/// (`chardata.CHARMAP_ENCODINGS`): name, whether it is one of ftfy's \"sloppy\" codecs",
        "/// (which read byte 0x1A as U+FFFD), and the characters of bytes 0x80 to 0xFF. Bytes",
        "/// below 0x80 are ASCII in all of them.",
        "pub(super) const CHARMAPS: [(&str, bool, &str); 10] = [",
        *charmaps(),
        "];",
        "",
        "/// The bytes that strict windows-1252 (Python's `cp1252`) leaves undefined.",
        f"pub(super) const WINDOWS_1252_UNDEFINED: [u8; 5] = [{undefined}];",
        "",
        "/// `badness.BADNESS_RE`: sequences that are much more likely mojibake than text.",
        f"pub(super) const BADNESS: &str = {rust_str(badness_re)};",
        "",
        "/// `chardata.UTF8_DETECTOR_RE` without its look-behind: runs of characters that look",
        "/// like UTF-8 read as a single-byte encoding.",
        f"pub(super) const UTF8_DETECTOR: &str = {rust_str(detector)};",
        "",
        "/// The look-behind of `UTF8_DETECTOR_RE`: a run must not follow one of these.",
        f"pub(super) const UTF8_CONTINUATION_STRICT: &str = {rust_str(strict)};",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(render())
    print(f"wrote {os.path.relpath(OUT)}")
