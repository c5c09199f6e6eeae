"""Secrets are accepted in private chats only: in a group the bot deletes the message and says where to go.

The sandbox Telegram has private chats only, so the group branch is driven at the handler level.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import base58
from mnemonic import Mnemonic
from solders.keypair import Keypair
from telegram.error import BadRequest

from handlers import start, text, wallets
from handlers.common import expect_input


class FakeChat:
    def __init__(self, kind: str = "group") -> None:
        self.id = -100123
        self.type = kind
        self.sent: list[str] = []

    async def send_message(self, message: str, **_: Any) -> None:
        self.sent.append(message)


class FakeMessage:
    def __init__(self, chat: FakeChat, body: str, *, deletable: bool = True) -> None:
        self.chat = chat
        self.text = body
        self.deleted = False
        self.deletable = deletable
        self.replies: list[str] = []

    async def delete(self) -> bool:
        if not self.deletable:
            raise BadRequest("Message can't be deleted")
        self.deleted = True
        return True

    async def reply_text(self, message: str, **_: Any) -> None:
        self.replies.append(message)


class FakeQuery:
    def __init__(self, data: str) -> None:
        self.data = data
        self.answers: list[tuple[str | None, bool]] = []
        self.message = None

    async def answer(self, message: str | None = None, show_alert: bool = False) -> None:
        self.answers.append((message, show_alert))


def group_update(body: str, *, deletable: bool = True, query: FakeQuery | None = None) -> Any:
    chat = FakeChat("group")
    message = FakeMessage(chat, body, deletable=deletable)
    return SimpleNamespace(
        effective_message=message, effective_chat=chat, effective_user=SimpleNamespace(id=7, first_name="Ann"),
        callback_query=query,
    )


def context(args: list[str] | None = None) -> Any:
    # no services: the group branch must refuse before anything is looked up or stored
    return SimpleNamespace(user_data={}, user_id=None, args=args or [], application=SimpleNamespace(bot_data={}), services=None)


async def test_apikey_as_a_command_argument_in_a_group_is_deleted() -> None:
    update = group_update("/apikey ls_abcdefghijklmnop")
    await start.apikey(update, context(["ls_abcdefghijklmnop"]))
    assert update.effective_message.deleted
    [said] = update.effective_chat.sent
    assert "Never send your API key in a group" in said and "private chat" in said and "I deleted your message" in said


async def test_the_awaited_key_sent_in_a_group_is_deleted_for_every_kind() -> None:
    for what, words in (("apikey", "API key"), ("import", "wallet key"), ("astralane", "Astralane key")):
        update = group_update("some-secret-value-123")
        ctx = context()
        expect_input(ctx, what)
        await text.on_text(update, ctx)
        assert update.effective_message.deleted, what
        assert f"Never send your {words} in a group" in update.effective_chat.sent[0]
        assert "awaiting" not in ctx.user_data  # the bot stops waiting for it


async def test_a_wallet_secret_pasted_in_a_group_is_deleted() -> None:
    keypair = Keypair()
    for pasted in (
        base58.b58encode(bytes(keypair)).decode(),
        str(list(bytes(keypair))),
        Mnemonic("english").generate(strength=128),
    ):
        update = group_update(f"here is my key {pasted}")
        await text.on_text(update, context())
        assert update.effective_message.deleted
        assert "Never send your secret key in a group" in update.effective_chat.sent[0]


async def test_ordinary_group_chatter_is_left_alone() -> None:
    update = group_update("gm, what are we buying today")
    await text.on_text(update, context())
    assert not update.effective_message.deleted and update.effective_chat.sent == []


async def test_when_telegram_refuses_the_deletion_the_user_is_told_to_delete_it() -> None:
    update = group_update(base58.b58encode(bytes(Keypair())).decode(), deletable=False)
    await text.on_text(update, context())
    assert "did not let me delete your message" in update.effective_chat.sent[0]
    assert "delete it yourself now" in update.effective_chat.sent[0]


async def test_wallet_key_buttons_do_nothing_in_a_group() -> None:
    for data in ("w:import", "w:gen", "w:exp:1", "w:expok:1"):
        query = FakeQuery(data)
        update = group_update("", query=query)
        ctx = context()
        ctx.services = SimpleNamespace()  # touched only past the private-chat check
        await wallets.on_button(update, ctx)
        assert query.answers == [("Wallet keys are handled in a private chat with me only.", True)], data
        assert "awaiting" not in ctx.user_data
