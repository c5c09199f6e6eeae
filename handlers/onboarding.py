"""Setup in three steps (LaserSell key, wallet, strategy): which step is next, showing it, and its buttons.

Shared by the features that finish a step (start: the key; wallets: import and generate; strategy: the
editor's Done), so it imports no feature module.
"""

from __future__ import annotations

from telegram import Update

from bot.callbacks import HomeTap, OnboardingTap, StrategyTap, WalletTap, keyboard
from bot.context import BotContext
from bot.notify.cards import MODE_NAMES, sol_text, tip_rule
from bot.notify.render import esc
from bot.services import Services
from bot.strategy import DEFAULT_STRATEGY
from handlers.common import answer, clear_input, edit_or_reply, expect_input, show, user_id_of
from handlers.registry import Button, Router

STEPS = ("apikey", "wallet", "strategy")
STEP_TITLES = {"apikey": "LaserSell key", "wallet": "wallet", "strategy": "strategy"}
STEP_COMMANDS = {"apikey": "/apikey", "wallet": "/wallets", "strategy": "/strategy"}


async def setup_state(services: Services, user_id: int) -> dict[str, bool]:
    """Which setup steps are done, from what is stored (not from what the user clicked)."""
    settings = await services.accounts.user_settings(user_id)
    return {
        "apikey": await services.accounts.key_info(user_id) is not None,
        "wallet": bool(await services.accounts.wallets.list(user_id)),
        "strategy": settings.strategy_json is not None,
    }


async def next_step(services: Services, user_id: int) -> str | None:
    done = await setup_state(services, user_id)
    skipped = (await services.accounts.user_settings(user_id)).skipped_steps
    return next((step for step in STEPS if not done[step] and step not in skipped), None)


async def is_set_up(services: Services, user_id: int) -> bool:
    return await next_step(services, user_id) is None and all((await setup_state(services, user_id)).values())


def progress(step: str) -> str:
    return f"<b>{STEPS.index(step) + 1}/{len(STEPS)} {STEP_TITLES[step]}</b>"


async def step_text(services: Services, user_id: int, step: str | None) -> tuple[str, object]:
    """The text and buttons of a setup step (or of the summary when `step` is None)."""
    if step == "apikey":
        operator = services.settings.lasersell_api_key and services.settings.is_admin(user_id)
        extra = "\n\nThis bot also has an operator key you may use instead." if operator else ""
        return (
            f"{progress('apikey')}\nSend me your LaserSell API key (from your LaserSell dashboard). I check it with "
            "LaserSell, keep it encrypted and delete your message at once." + extra,
            keyboard([("Enter my key", OnboardingTap("key"))], [("Skip for now", OnboardingTap("skip", "apikey"))]),
        )
    if step == "wallet":
        return (
            f"{progress('wallet')}\nAdd the wallet you trade from: import its secret key or recovery phrase, or let me "
            "generate a new one. Keys are encrypted at rest and used only to sign your exits.",
            keyboard(
                [("Import a wallet", WalletTap("import")), ("Generate a new one", WalletTap("gen"))],
                [("Skip for now", OnboardingTap("skip", "wallet"))],
            ),
        )
    if step == "strategy":
        strategy = await services.accounts.strategy(user_id)
        lines = "\n".join(f"• {esc(line)}" for line in strategy.describe())
        return (
            f"{progress('strategy')}\nYour exit strategy. The defaults:\n{lines}",
            keyboard([("Use this strategy", OnboardingTap("strategy")), ("Edit it", StrategyTap("edit"))],
                     [("Skip for now", OnboardingTap("skip", "strategy"))]),
        )
    done = all((await setup_state(services, user_id)).values())
    return await summary(services, user_id), keyboard([("🏠 Home", HomeTap("home"))]) if done else None


async def show_step(update: Update, context: BotContext, *, edit: bool = False) -> None:
    """Show the next setup step (or the summary when nothing is left)."""
    services = context.services
    user_id = user_id_of(update)
    step = await next_step(services, user_id)
    await services.accounts.note_setup(user_id, step=step or "done")
    text, markup = await step_text(services, user_id, step)
    await show(update, text, markup, edit=edit)  # type: ignore[arg-type]


async def continue_setup(update: Update, context: BotContext) -> None:
    """After a step was done elsewhere (a wallet added, a strategy saved): show the next one, if setting up."""
    services = context.services
    user_id = user_id_of(update)
    settings = await services.accounts.user_settings(user_id)
    if settings.onboarding_step != "done" and await next_step(services, user_id) is not None:
        await show_step(update, context)


async def summary(services: Services, user_id: int) -> str:
    done = await setup_state(services, user_id)
    if all(done.values()):
        s = await services.accounts.user_settings(user_id)
        return (
            "✅ You're set up. I'm watching your wallets: new positions, liquidity alerts and exit signals will "
            f"arrive here.\nSells go out through {MODE_NAMES.get(s.send_mode, esc(s.send_mode))} with a "
            f"{sol_text(s.tip_lamports)} tip ({tip_rule(s.send_mode)}); change it in /settings."
            "\n/wallets · /strategy · /settings · /status"
        )
    missing = [f"{STEP_TITLES[s]} ({STEP_COMMANDS[s]})" for s in STEPS if not done[s]]
    return "Setup is not finished. Still to do: " + ", ".join(missing) + ".\nYou can finish it any time from /settings."


async def on_setup_button(update: Update, context: BotContext) -> None:
    tap = OnboardingTap.read(update)
    services = context.services
    user_id = user_id_of(update)
    await answer(update)
    if tap.action == "key":
        expect_input(context, "apikey")
        await edit_or_reply(update, f"{progress('apikey')}\nSend your LaserSell API key as your next message.")
        return
    if tap.action == "skip" and tap.step:
        await services.accounts.note_setup(user_id, skipped=tap.step)
        clear_input(context)
    elif tap.action == "strategy":
        current = await services.accounts.strategy(user_id)
        await services.accounts.set_strategy(user_id, current or DEFAULT_STRATEGY)
    await show_step(update, context, edit=True)


router = Router(buttons=[Button(OnboardingTap, on_setup_button)])
