"""Telegram's HTML formatting: the visible text and its entities, or the real server's error."""

from __future__ import annotations

from typing import Any


class HtmlParseError(ValueError):
    pass


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "code": "code", "pre": "pre", "blockquote": "blockquote", "a": "text_link",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def utf16_len(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decodes the entity at `text[pos] == "&"` as the real server does (";" optional)."""
    end = pos + 1
    if text.startswith("#", end):
        end += 1
        base = 10
        if text[end:end + 1] in ("x", "X"):
            base = 16
            end += 1
        digits_begin = end
        allowed = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
        while end < len(text) and text[end] in allowed:
            end += 1
        if end == digits_begin or end - digits_begin > 8:
            return None
        code = int(text[digits_begin:end], base)
        if code == 0 or code >= 0x110000 or 0xD800 <= code <= 0xDFFF:
            return None
        char = chr(code)
    else:
        while end < len(text) and text[end].isascii() and text[end].isalpha():
            end += 1
        char = _NAMED_ENTITIES.get(text[pos + 1:end], "")
        if not char:
            return None
    if text.startswith(";", end):
        end += 1
    return char, end


def parse_html(text: str, strict: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Returns the visible text and its entities (UTF-16 offsets), or raises HtmlParseError
    with the description the real server gives (byte offsets into the UTF-8 source)."""
    return _HtmlParser(text, strict).parse()


class _HtmlParser:
    """One pass over the source, as the real server's parser goes: text, entities, tags."""

    def __init__(self, text: str, strict: bool) -> None:
        self.text = text
        self.strict = strict
        self.n = len(text)
        self.i = 0
        self.out: list[str] = []
        self.utf16 = 0
        self.stack: list[dict[str, Any]] = []
        self.entities: list[dict[str, Any]] = []

    def at(self, index: int) -> int:
        """The byte offset of `text[index]`, as error descriptions give it."""
        return len(self.text[:index].encode("utf-8"))

    def parse(self) -> tuple[str, list[dict[str, Any]]]:
        while self.i < self.n:
            c = self.text[self.i]
            if c == "&":
                self._html_entity()
            elif c != "<":
                self._emit(c)
                self.i += 1
            elif self.i + 1 < self.n and self.text[self.i + 1] == "/":
                self._close_tag()
            else:
                self._open_tag()
        if self.stack:
            raise HtmlParseError(f"Can't find end tag corresponding to start tag {self.stack[-1]['tag']}")
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.out), self.entities

    def _emit(self, chars: str) -> None:
        self.out.append(chars)
        self.utf16 += utf16_len(chars)

    def _html_entity(self) -> None:
        decoded = _decode_html_entity(self.text, self.i)
        if decoded is None:
            if self.strict:
                raise HtmlParseError(f'Character "&" at byte offset {self.at(self.i)} must be escaped as "&amp;"')
            self._emit("&")
            self.i += 1
            return
        char, self.i = decoded
        self._emit(char)

    def _skip_space(self) -> None:
        while self.i < self.n and self.text[self.i].isspace():
            self.i += 1

    def _unclosed_at_end(self, begin: int) -> None:
        if self.i == self.n:
            raise HtmlParseError(f"Unclosed start tag at byte offset {self.at(begin)}")

    def _open_tag(self) -> None:
        text, begin = self.text, self.i
        self.i += 1
        while self.i < self.n and not text[self.i].isspace() and text[self.i] != ">":
            self.i += 1
        self._unclosed_at_end(begin)
        tag = text[begin + 1 : self.i].lower()
        if tag not in _HTML_TAGS:
            raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {self.at(begin)}')
        argument = ""
        expandable = False
        while True:
            self._skip_space()
            self._unclosed_at_end(begin)
            if text[self.i] == ">":
                break
            attribute, value = self._attribute(tag, begin)
            if value is None:
                expandable = True
            elif tag == "a" and attribute == "href":
                argument = value
            elif tag == "code" and attribute == "class" and value.startswith("language-"):
                argument = value[len("language-") :]
            elif tag == "span" and attribute == "class" and value.startswith("tg-"):
                argument = value[len("tg-") :]
        if tag == "span" and argument != "spoiler":
            raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {self.at(begin)}')
        self.stack.append({"tag": tag, "argument": argument, "offset": self.utf16, "expandable": expandable})
        self.i += 1

    def _attribute(self, tag: str, begin: int) -> tuple[str, str | None]:
        """One `name=value` of a start tag; value None for a bare `expandable` on a blockquote."""
        text = self.text
        name_begin = self.i
        while self.i < self.n and not text[self.i].isspace() and text[self.i] not in "=>":
            self.i += 1
        attribute = text[name_begin : self.i].lower()
        if not attribute:
            raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {self.at(begin)}')
        self._skip_space()
        self._unclosed_at_end(begin)
        if text[self.i] != "=":
            if tag == "blockquote" and attribute == "expandable":
                return attribute, None
            raise HtmlParseError(
                f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                f"at byte offset {self.at(begin)}"
            )
        self.i += 1
        self._skip_space()
        self._unclosed_at_end(begin)
        value = self._quoted_value() if text[self.i] in "'\"" else self._token_value()
        self._unclosed_at_end(begin)
        return attribute, value

    def _quoted_value(self) -> str:
        text = self.text
        quote = text[self.i]
        self.i += 1
        chars: list[str] = []
        while self.i < self.n and text[self.i] != quote:
            if text[self.i] == "&" and (decoded := _decode_html_entity(text, self.i)) is not None:
                chars.append(decoded[0])
                self.i = decoded[1]
                continue
            chars.append(text[self.i])
            self.i += 1
        if self.i < self.n:
            self.i += 1
        return "".join(chars)

    def _token_value(self) -> str:
        text = self.text
        token_begin = self.i
        while self.i < self.n and (text[self.i].isalnum() or text[self.i] in ".-_:"):
            self.i += 1
        if self.i == token_begin:
            raise HtmlParseError(f"Unexpected end of name token at byte offset {self.at(token_begin)}")
        return text[token_begin : self.i]

    def _close_tag(self) -> None:
        text, begin = self.text, self.i
        if not self.stack:
            raise HtmlParseError(f"Unexpected end tag at byte offset {self.at(begin)}")
        self.i += 2
        name_begin = self.i
        while self.i < self.n and not text[self.i].isspace() and text[self.i] != ">":
            self.i += 1
        end_name = text[name_begin : self.i].lower()
        self._skip_space()
        if self.i == self.n or text[self.i] != ">":
            raise HtmlParseError(f"Unclosed end tag at byte offset {self.at(begin)}")
        open_tag = self.stack[-1]
        if end_name and end_name != open_tag["tag"]:
            raise HtmlParseError(
                f'Unmatched end tag at byte offset {self.at(begin)}, expected "</{open_tag["tag"]}>", '
                f'found "</{end_name}>"'
            )
        self.stack.pop()
        self.i += 1
        if open_tag["tag"] == "code" and self.stack and self.stack[-1]["tag"] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language
            if open_tag["argument"]:
                self.stack[-1]["argument"] = open_tag["argument"]
            return
        length = self.utf16 - open_tag["offset"]
        if length > 0:
            self.entities.append(_entity(open_tag, length))


def _entity(open_tag: dict[str, Any], length: int) -> dict[str, Any]:
    tag = open_tag["tag"]
    entity: dict[str, Any] = {"type": _HTML_TAGS[tag], "offset": open_tag["offset"], "length": length}
    if tag == "a":
        if open_tag["argument"]:
            entity["url"] = open_tag["argument"]
        else:
            entity["type"] = "url"
    elif tag == "pre" and open_tag["argument"]:
        entity["language"] = open_tag["argument"]
    elif tag == "blockquote" and open_tag["expandable"]:
        entity["type"] = "expandable_blockquote"
    return entity
