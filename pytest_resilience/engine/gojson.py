"""Go's words for a malformed JSON body, so the engine refuses one as Toxiproxy does.

Toxiproxy reads a body with ``json.NewDecoder(body).Decode``: it reads the first JSON
value and says what is wrong with the first byte that cannot continue it, in the words
of Go's ``encoding/json`` scanner (``invalid character 'x' after object key``), or
``unexpected EOF`` when the body ends inside the value.  :func:`syntax_error` follows
that scanner's states; Python's decoder only tells where it stopped.
"""

from __future__ import annotations

import json

SPACE = " \t\r\n"


class _Stop(Exception):
    """The scan stopped at a byte that cannot continue the value, with Go's message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _digit(c: str) -> bool:
    """An ASCII digit (``str.isdigit`` takes other scripts' digits too); ``""`` is none."""
    return "0" <= c <= "9"


_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}


def quote_char(c: str) -> str:
    """A byte (here a latin-1 character) as Go's scanner quotes it in an error
    (``quoteChar``: ``strconv.Quote`` of the byte as a rune, in single quotes)."""
    code = ord(c)
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    if code in _ESCAPES:
        return f"'{_ESCAPES[code]}'"
    if code < 0x20 or code == 0x7F:
        return f"'\\x{code:02x}'"
    if code >= 0x80 and not c.isprintable():
        return f"'\\u{code:04x}'"
    return f"'{c}'"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def peek(self) -> str:
        if self.at >= len(self.text):
            raise _Stop("unexpected EOF")
        return self.text[self.at]

    def take(self) -> str:
        c = self.peek()
        self.at += 1
        return c

    def skip_space(self) -> str:
        while self.peek() in SPACE:
            self.at += 1
        return self.peek()

    def fail(self, c: str, context: str) -> _Stop:
        return _Stop(f"invalid character {quote_char(c)} {context}")

    def value(self, depth: int = 0) -> None:
        c = self.skip_space()
        if depth > 10000:
            raise _Stop(f"invalid character {quote_char(c)} exceeded max depth")
        if c == "{":
            self.at += 1
            self.members(depth + 1)
        elif c == "[":
            self.at += 1
            self.elements(depth + 1)
        elif c == '"':
            self.at += 1
            self.string()
        elif c == "-" or _digit(c):
            self.number()
        elif c in "tfn":
            self.literal({"t": "true", "f": "false", "n": "null"}[c])
        else:
            raise self.fail(c, "looking for beginning of value")

    def members(self, depth: int) -> None:
        c = self.skip_space()
        if c == "}":
            self.at += 1
            return
        while True:
            if c != '"':
                raise self.fail(c, "looking for beginning of object key string")
            self.at += 1
            self.string()
            c = self.skip_space()
            if c != ":":
                raise self.fail(c, "after object key")
            self.at += 1
            self.value(depth)
            c = self.skip_space()
            if c == "}":
                self.at += 1
                return
            if c != ",":
                raise self.fail(c, "after object key:value pair")
            self.at += 1
            c = self.skip_space()

    def elements(self, depth: int) -> None:
        c = self.skip_space()
        if c == "]":
            self.at += 1
            return
        while True:
            self.value(depth)
            c = self.skip_space()
            if c == "]":
                self.at += 1
                return
            if c != ",":
                raise self.fail(c, "after array element")
            self.at += 1

    def string(self) -> None:
        while True:
            c = self.take()
            if c == '"':
                return
            if c == "\\":
                e = self.take()
                if e == "u":
                    for _ in range(4):
                        h = self.take()
                        if h not in "0123456789abcdefABCDEF":
                            raise self.fail(h, "in \\u hexadecimal character escape")
                elif e not in '"\\/bfnrt':
                    raise self.fail(e, "in string escape code")
            elif ord(c) < 0x20:
                raise self.fail(c, "in string literal")

    def number(self) -> None:
        if self.peek() == "-":
            self.at += 1
            c = self.peek()
            if not _digit(c):
                raise self.fail(c, "in numeric literal")
        if self.take() != "0":
            self.digits()
        if self.more() == ".":
            self.at += 1
            c = self.peek()
            if not _digit(c):
                raise self.fail(c, "after decimal point in numeric literal")
            self.digits()
        if self.more() in ("e", "E"):
            self.at += 1
            if self.peek() in "+-":
                self.at += 1
            c = self.peek()
            if not _digit(c):
                raise self.fail(c, "in exponent of numeric literal")
            self.digits()

    def more(self) -> str:
        """The next byte, or "" at the end (a number may end the body)."""
        return self.text[self.at] if self.at < len(self.text) else ""

    def digits(self) -> None:
        while _digit(self.more()):
            self.at += 1

    def literal(self, word: str) -> None:
        self.at += 1
        for expected in word[1:]:
            c = self.take()
            if c != expected:
                raise self.fail(c, f"in literal {word} (expecting {quote_char(expected)})")


def syntax_error(body: bytes) -> str | None:
    """Go's message for the first JSON value of ``body``; None when it is well formed."""
    text = body.decode("latin-1")  # one character a byte, as Go's scanner reads them
    scanner = _Scanner(text)
    if not text.strip(SPACE):
        return "EOF"
    try:
        scanner.value()
    except _Stop as stop:
        return stop.message
    except RecursionError:
        return "invalid character '[' exceeded max depth"
    return None


_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def dumps(value: object) -> str:
    """``value`` as Go's ``encoding/json`` writes it: compact, UTF-8 as is, and ``<``, ``>``,
    ``&``, U+2028 and U+2029 escaped (Go escapes them for HTML by default)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).translate(_HTML)
