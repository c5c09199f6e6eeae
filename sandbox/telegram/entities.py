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

    def at(index: int) -> int:
        return len(text[:index].encode("utf-8"))

    out: list[str] = []
    utf16 = 0
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is None:
                if strict:
                    raise HtmlParseError(f'Character "&" at byte offset {at(i)} must be escaped as "&amp;"')
                out.append(c)
                utf16 += 1
                i += 1
                continue
            char, i = decoded
            out.append(char)
            utf16 += utf16_len(char)
            continue
        if c != "<":
            out.append(c)
            utf16 += utf16_len(c)
            i += 1
            continue

        begin = i
        i += 1
        if i >= n or text[i] != "/":
            # an opening tag
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            if i == n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
            tag = text[begin + 1:i].lower()
            if tag not in _HTML_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {at(begin)}')
            argument = ""
            expandable = False
            while True:
                while i < n and text[i].isspace():
                    i += 1
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] == ">":
                    break
                name_begin = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                attribute = text[name_begin:i].lower()
                if not attribute:
                    raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {at(begin)}')
                while i < n and text[i].isspace():
                    i += 1
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] != "=":
                    if tag == "blockquote" and attribute == "expandable":
                        expandable = True
                        continue
                    raise HtmlParseError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                        f"at byte offset {at(begin)}"
                    )
                i += 1
                while i < n and text[i].isspace():
                    i += 1
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] in "'\"":
                    quote = text[i]
                    i += 1
                    value_chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&" and (decoded := _decode_html_entity(text, i)) is not None:
                            value_chars.append(decoded[0])
                            i = decoded[1]
                            continue
                        value_chars.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(value_chars)
                else:
                    token_begin = i
                    while i < n and (text[i].isalnum() or text[i] in ".-_:"):
                        i += 1
                    if i == token_begin:
                        raise HtmlParseError(f"Unexpected end of name token at byte offset {at(token_begin)}")
                    value = text[token_begin:i]
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if tag == "a" and attribute == "href":
                    argument = value
                elif tag == "code" and attribute == "class" and value.startswith("language-"):
                    argument = value[len("language-"):]
                elif tag == "span" and attribute == "class" and value.startswith("tg-"):
                    argument = value[len("tg-"):]
            if tag == "span" and argument != "spoiler":
                raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}')
            stack.append({"tag": tag, "argument": argument, "offset": utf16, "expandable": expandable})
            i += 1
            continue

        # a closing tag
        if not stack:
            raise HtmlParseError(f"Unexpected end tag at byte offset {at(begin)}")
        i += 1
        name_begin = i
        while i < n and not text[i].isspace() and text[i] != ">":
            i += 1
        end_name = text[name_begin:i].lower()
        while i < n and text[i].isspace():
            i += 1
        if i == n or text[i] != ">":
            raise HtmlParseError(f"Unclosed end tag at byte offset {at(begin)}")
        open_tag = stack[-1]
        if end_name and end_name != open_tag["tag"]:
            raise HtmlParseError(
                f'Unmatched end tag at byte offset {at(begin)}, expected "</{open_tag["tag"]}>", '
                f'found "</{end_name}>"'
            )
        stack.pop()
        i += 1
        length = utf16 - open_tag["offset"]
        tag = open_tag["tag"]
        if tag == "code" and stack and stack[-1]["tag"] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language
            if open_tag["argument"]:
                stack[-1]["argument"] = open_tag["argument"]
            continue
        if length <= 0:
            continue
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
        entities.append(entity)
    if stack:
        raise HtmlParseError(f"Can't find end tag corresponding to start tag {stack[-1]['tag']}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities
