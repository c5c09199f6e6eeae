"""The secret screen sees every text first: captions, edits and replies too (the sandbox Telegram sends
plain messages only, so these shapes are driven at the handler level)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import base58
import pytest
from mnemonic import Mnemonic
from solders.keypair import Keypair
from telegram.ext import ApplicationHandlerStop

from handlers.common import delete_secret_message, expect_input
from handlers.text import screen_secrets


class FakeDeletions:
    def __init__(self, outcome: str = "deleted") -> None:
        self.outcome = outcome
        self.deleted: list[tuple[int, int]] = []

    async def delete_secret(self, chat_id: int, message_id: int) -> str:
        self.deleted.append((chat_id, message_id))
        return self.outcome


class FakeChat:
    def __init__(self, kind: str = "private") -> None:
        self.id = 42 if kind == "private" else -100
        self.type = kind
        self.sent: list[str] = []

    async def send_message(self, text: str, **_: Any) -> None:
        self.sent.append(text)


class FakeMessage:
    def __init__(self, chat: FakeChat, text: str | None = None, caption: str | None = None, reply_to: Any = None) -> None:
        self.chat = chat
        self.message_id = 9
        self.text = text
        self.caption = caption
        self.reply_to_message = reply_to
        self.from_user = SimpleNamespace(id=7, is_bot=False)
        self.self_deleted = False

    async def delete(self) -> bool:
        self.self_deleted = True
        return True


def update_with(message: FakeMessage, field: str = "message") -> Any:
    fields = dict.fromkeys(
        ("message", "edited_message", "channel_post", "edited_channel_post", "business_message",
         "edited_business_message"),
    )
    fields[field] = message
    return SimpleNamespace(**fields, effective_chat=message.chat, effective_message=message,
                           effective_user=SimpleNamespace(id=7))


def context(deletions: FakeDeletions) -> Any:
    return SimpleNamespace(user_data={}, user_id=None, services=SimpleNamespace(deletions=deletions))


SECRET = base58.b58encode(bytes(Keypair())).decode()


@pytest.mark.parametrize(
    ("field", "text", "caption"),
    [
        ("message", None, f"look at this {SECRET}"),  # a photo with the key as its caption
        ("edited_message", f"oops {SECRET[:40]}\n{SECRET[40:]}", None),  # a message edited into a key
        ("message", Mnemonic("english").generate(strength=256), None),
    ],
    ids=["key-in-caption", "key-edited-in", "seed-phrase"],  # never the secret itself in a test id
)
async def test_a_secret_in_a_caption_an_edit_or_a_reply_is_deleted_and_goes_no_further(
    field: str, text: str | None, caption: str | None
) -> None:
    chat = FakeChat()
    message = FakeMessage(chat, text, caption, reply_to=FakeMessage(chat, "an earlier message"))
    deletions = FakeDeletions()
    with pytest.raises(ApplicationHandlerStop):
        await screen_secrets(update_with(message, field), context(deletions))
    assert deletions.deleted == [(chat.id, message.message_id)]
    [said] = chat.sent
    assert "I deleted your message" in said and "Import a wallet" in said
    assert SECRET[:12] not in said


async def test_in_a_group_a_secret_is_deleted_and_the_user_sent_to_a_private_chat() -> None:
    chat = FakeChat("group")
    deletions = FakeDeletions()
    with pytest.raises(ApplicationHandlerStop):
        await screen_secrets(update_with(FakeMessage(chat, f"/buy {SECRET} 1")), context(deletions))
    assert deletions.deleted and "Never send your secret key in a group" in chat.sent[0]


async def test_ordinary_messages_pass_untouched() -> None:
    chat = FakeChat()
    deletions = FakeDeletions()
    for text in ("gm", f"/buy {Keypair().pubkey()} 0.1", "/strategy tp 25 sl 10", "Wallet for memes"):
        await screen_secrets(update_with(FakeMessage(chat, text)), context(deletions))
    assert deletions.deleted == [] and chat.sent == []


async def test_the_key_the_import_prompt_asked_for_goes_on_to_the_import_already_being_deleted() -> None:
    chat = FakeChat()
    deletions = FakeDeletions(outcome="retrying")
    message = FakeMessage(chat, SECRET)
    ctx = context(deletions)
    expect_input(ctx, "import")
    await screen_secrets(update_with(message), ctx)  # no stop: the import flow runs next
    assert deletions.deleted == [(chat.id, message.message_id)] and chat.sent == []
    note = await delete_secret_message(message, "wallet key")  # what the import flow says
    assert "has not let me delete your message with the wallet key yet" in note and not message.self_deleted
