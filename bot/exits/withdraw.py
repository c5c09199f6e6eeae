"""Withdraw or sweep SOL, or a token, from a wallet to an address on the user's allow-list.

The transfer is built here, then goes the one way everything the bot signs goes: the executor's guard
(structure and the simulated effect on the wallet, as for a buy whose spend is the amount and whose tip is
zero), then sign, persist, send and confirm. One rule only a withdrawal needs is checked first, in this
file: the transaction is exactly one System transfer of the amount from the wallet to the allow-listed
address (and, optionally, a compute-budget instruction), so the guard's "spend" can go nowhere else.

A token withdrawal (`Withdrawer.withdraw_token`) is one `TransferChecked` of the amount from the wallet's
associated token account to the destination's (created idempotently first, the wallet paying its rent). It goes
through the guard as a `TokenWithdrawIntent`: that structure only, and a simulated effect of exactly that move.

The allow-list and the PIN are the caller's (the dashboard): `Withdrawer.withdraw` trusts that they were
checked and that `destination` is an allow-listed, unlocked address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from bot.exits.executor import Checked, Trade, TradeHooks
from bot.exits.guard import (
    ASSOCIATED_TOKEN_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    LAMPORTS_PER_SIGNATURE,
    NATIVE_MINT,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAMS,
    BuyIntent,
    GuardRefusal,
    TokenWithdrawIntent,
    associated_token_address,
    format_sol,
)
from bot.exits.signer import SigningError
from bot.solana_rpc import RpcError, SignatureStatus
from storage.miniapp import Withdrawal, Withdrawals

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("lasersell_bot.withdraw")

# A System account below the rent-exempt minimum for 0 bytes cannot stay open; a sweep leaves this much so the
# wallet keeps existing (the guard also refuses a transaction that would close the wallet).
KEEP_LAMPORTS = 890_880
CONFIRM_TIMEOUT_S = 60.0


class WithdrawalError(Exception):
    """A withdrawal could not be made; ``str()`` says why in words a user can act on."""


@dataclass(frozen=True)
class WithdrawalOutcome:
    kind: str  # landed, failed, refused, unknown
    words: str
    record: Withdrawal
    signature: str | None = None


def parse_address(text: str) -> Pubkey:
    try:
        key = Pubkey.from_string(text.strip())
    except ValueError:
        raise WithdrawalError("That is not a Solana address: paste the 32–44 letter base58 address.") from None
    if not key.is_on_curve():
        raise WithdrawalError("That address is a program-derived address, not a wallet: withdraw to a wallet address.")
    return key


def build_transfer(wallet: Pubkey, destination: Pubkey, lamports: int, blockhash: Hash) -> VersionedTransaction:
    """The unsigned v0 transaction of one System transfer, paid for by `wallet`."""
    ix = transfer(TransferParams(from_pubkey=wallet, to_pubkey=destination, lamports=lamports))
    message = MessageV0.try_compile(wallet, [ix], [], blockhash)
    return VersionedTransaction.populate(message, [Signature.default()])


def build_token_transfer(intent: TokenWithdrawIntent, blockhash: Hash) -> VersionedTransaction:
    """The unsigned v0 transaction of a token withdrawal: create the destination's associated token account if it
    is missing (CreateIdempotent, the wallet paying), then one TransferChecked of the amount."""
    wallet, dest_account = intent.wallet, intent.destination_account
    create = Instruction(ASSOCIATED_TOKEN_PROGRAM, bytes([1]), [
        AccountMeta(wallet, is_signer=True, is_writable=True),
        AccountMeta(dest_account, is_signer=False, is_writable=True),
        AccountMeta(intent.destination, is_signer=False, is_writable=False),
        AccountMeta(intent.mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM, is_signer=False, is_writable=False),
        AccountMeta(intent.token_program, is_signer=False, is_writable=False),
    ])
    move = Instruction(intent.token_program, bytes([12]) + intent.amount.to_bytes(8, "little") + bytes([intent.decimals]), [
        AccountMeta(intent.source_account, is_signer=False, is_writable=True),
        AccountMeta(intent.mint, is_signer=False, is_writable=False),
        AccountMeta(dest_account, is_signer=False, is_writable=True),
        AccountMeta(wallet, is_signer=True, is_writable=True),
    ])
    message = MessageV0.try_compile(wallet, [create, move], [], blockhash)
    return VersionedTransaction.populate(message, [Signature.default()])


def token_units(text: object, decimals: int) -> int:
    """A token amount as typed ("12.5") in base units; WithdrawalError when it is not a positive number of at most
    `decimals` decimal places."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        value = Decimal(-1)
    if isinstance(text, bool) or not value.is_finite() or value <= 0:
        raise WithdrawalError("The amount must be a number of tokens above 0, like 12.5 (or choose Sweep).")
    units = value.scaleb(decimals)
    if units != units.to_integral_value():
        raise WithdrawalError(f"This token has {decimals} decimal places: the amount cannot be finer than that.")
    return int(units)


def check_withdrawal(tx: VersionedTransaction, wallet: Pubkey, destination: Pubkey, lamports: int) -> None:
    """This file's rule: one System transfer of `lamports` from `wallet` to `destination`, nothing else but a
    compute-budget instruction. Raises GuardRefusal otherwise."""
    message = tx.message
    keys = list(message.account_keys)
    transfers = 0
    for ix in message.instructions:
        program = keys[ix.program_id_index]
        if program == COMPUTE_BUDGET_PROGRAM:
            continue
        data = bytes(ix.data)
        accounts = [keys[i] for i in bytes(ix.accounts)]
        if program != SYSTEM_PROGRAM or len(data) != 12 or int.from_bytes(data[:4], "little") != 2:
            raise GuardRefusal("withdrawal_shape", "a withdrawal may only transfer SOL")
        if accounts[:2] != [wallet, destination] or int.from_bytes(data[4:12], "little") != lamports:
            raise GuardRefusal("withdrawal_destination", "the transfer does not go to the address you chose")
        transfers += 1
    if transfers != 1:
        raise GuardRefusal("withdrawal_shape", "a withdrawal is exactly one transfer")


class Withdrawer:
    """Builds, guards, signs, sends and confirms withdrawals through the shared executor."""

    def __init__(self, services: Services, records: Withdrawals) -> None:
        self.services = services
        self.records = records

    async def _endpoints(self, user_id: int, wallet: str, destination: str) -> tuple[Pubkey, Pubkey]:
        """The user's own wallet and a different destination address, or a WithdrawalError saying why not."""
        owned = {w.address for w in await self.services.accounts.wallets.list(user_id)}
        if wallet not in owned:
            raise WithdrawalError("That wallet is not one of yours any more: reload the dashboard.")
        wallet_key, destination_key = Pubkey.from_string(wallet), parse_address(destination)
        if wallet_key == destination_key:
            raise WithdrawalError("The address is this wallet itself: choose another wallet or address.")
        return wallet_key, destination_key

    async def withdraw(self, user_id: int, wallet: str, destination: str, lamports: int | None) -> WithdrawalOutcome:
        """Send `lamports` (None: sweep all but what keeps the wallet open) from `wallet` to `destination`."""
        executor = self.services.executor
        wallet_key, destination_key = await self._endpoints(user_id, wallet, destination)
        rpc = self.services.rpc
        try:
            balance = int(await rpc.get_balance(wallet))
            blockhash, _height = await rpc.get_latest_blockhash()
        except RpcError as exc:
            raise WithdrawalError(f"The Solana node did not answer ({exc}); nothing was sent. Try again.") from None
        fee = LAMPORTS_PER_SIGNATURE
        if lamports is None:
            lamports = balance - fee - KEEP_LAMPORTS
            if lamports <= 0:
                raise WithdrawalError(f"This wallet holds {format_sol(balance)}: nothing to sweep.")
        if lamports <= 0:
            raise WithdrawalError("The amount must be more than 0 SOL.")
        if lamports + fee > balance:
            raise WithdrawalError(
                f"This wallet holds {format_sol(balance)}; {format_sol(lamports)} plus the {format_sol(fee)} fee is "
                "more than that. Send less, or use Sweep."
            )
        tx = build_transfer(wallet_key, destination_key, lamports, blockhash)
        check_withdrawal(tx, wallet_key, destination_key, lamports)
        record = await self.records.create(user_id, wallet, destination, lamports)
        trade = Trade(
            user_id=user_id, wallet=wallet, tx=tx,
            # to the guard a withdrawal is a spend of exactly the amount with no tip: SOL out of the wallet
            # beyond the amount and the fee, or any token moving, is refused on the simulated effect
            intent=BuyIntent(wallet=wallet_key, mint=NATIVE_MINT, max_sol_lamports=lamports, max_tip_lamports=0),
            send_mode="rpc", records=self.records, record_id=record.id, label="SOL",
        )
        result: WithdrawalOutcome = await executor.execute(trade, _WithdrawHooks(self, record))
        return result


    async def withdraw_token(
        self, user_id: int, wallet: str, destination: str, mint: str, amount: object | None
    ) -> WithdrawalOutcome:
        """Send `amount` tokens of `mint` as typed (None: sweep the whole balance) from `wallet` to `destination`."""
        wallet_key, destination_key = await self._endpoints(user_id, wallet, destination)
        try:
            mint_key = Pubkey.from_string(mint.strip())
        except ValueError:
            raise WithdrawalError("That is not a token mint address: pick a token this wallet holds.") from None
        rpc = self.services.rpc
        try:
            holdings = await rpc.get_token_holdings(wallet)
            balance = int(await rpc.get_balance(wallet))
            blockhash, _height = await rpc.get_latest_blockhash()
        except RpcError as exc:
            raise WithdrawalError(f"The Solana node did not answer ({exc}); nothing was sent. Try again.") from None
        holding = next((
            h for h in holdings
            if h.mint == str(mint_key) and Pubkey.from_string(h.program) in TOKEN_PROGRAMS
            and h.token_account == str(associated_token_address(wallet_key, mint_key, Pubkey.from_string(h.program)))
        ), None)
        if holding is None or holding.amount <= 0:
            raise WithdrawalError("This wallet holds none of that token: pick a token it holds.")
        units = holding.amount if amount is None else token_units(amount, holding.decimals)
        if units > holding.amount:
            raise WithdrawalError(
                f"This wallet holds {token_amount_text(holding.amount, holding.decimals)} of that token: send less, or use Sweep."
            )
        intent = TokenWithdrawIntent(wallet_key, mint_key, Pubkey.from_string(holding.program), destination_key, units,
                                     holding.decimals)
        if balance < LAMPORTS_PER_SIGNATURE:
            raise WithdrawalError(f"This wallet holds {format_sol(balance)}: it needs SOL for the network fee.")
        tx = build_token_transfer(intent, blockhash)
        record = await self.records.create(user_id, wallet, destination, units, str(mint_key))
        trade = Trade(
            user_id=user_id, wallet=wallet, tx=tx, intent=intent, send_mode="rpc", records=self.records,
            record_id=record.id, label="the token",
        )
        result: WithdrawalOutcome = await self.services.executor.execute(
            trade, _WithdrawHooks(self, record, token_amount_text(units, holding.decimals) + " tokens")
        )
        return result


def token_amount_text(units: int, decimals: int) -> str:
    """Base units as a number of tokens: 12500000 with 6 decimals is "12.5"."""
    text = format(Decimal(units).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class _WithdrawHooks(TradeHooks[WithdrawalOutcome]):
    def __init__(self, withdrawer: Withdrawer, record: Withdrawal, what: str | None = None) -> None:
        self.records = withdrawer.records
        self.record = record
        self.what = what  # the amount in words ("12.5 tokens"); None: the record's SOL

    async def _end(self, kind: str, words: str, state: str, signature: str | None = None) -> WithdrawalOutcome:
        await self.records.set(self.record.id, state=state, error=None if state == "landed" else words[:200])
        current = await self.records.get(self.record.id)
        return WithdrawalOutcome(kind, words, current or self.record, signature)

    async def refused(self, refusal: GuardRefusal) -> WithdrawalOutcome:
        return await self._end("refused", f"{refusal} Nothing was signed.", "failed")

    async def unverified(self, reason: str) -> WithdrawalOutcome:
        return await self._end("refused", f"Not signed: it could not be verified ({reason}). Try again.", "failed")

    async def stale(self) -> WithdrawalOutcome:
        return await self._end("failed", "The transaction went stale before signing: try again.", "failed")

    async def moved_on(self) -> WithdrawalOutcome:
        current = await self.records.get(self.record.id)
        return WithdrawalOutcome("failed", "This withdrawal was already handled; nothing more was sent.",
                                 current or self.record)

    async def cannot_pay(self, needed: int, held: int) -> WithdrawalOutcome:
        return await self._end("failed", f"The wallet holds {format_sol(held)}, less than the {format_sol(needed)} "
                               "this needs.", "failed")

    async def signing_failed(self, error: SigningError) -> WithdrawalOutcome:
        return await self._end("failed", str(error), "failed")

    async def send_failed(self, error: RpcError, raw: bytes) -> WithdrawalOutcome:
        return await self._end("failed", f"The network refused it ({error}).", "failed")

    async def sent(self, checked: Checked) -> None:
        log.info("withdrawal %s sent", self.record.id)

    async def settled(self, verdict: str, status: SignatureStatus | None, raw: bytes, signature: str) -> WithdrawalOutcome:
        if verdict == "landed":
            sol = self.what or format_sol(self.record.lamports)
            return await self._end("landed", f"Sent {sol} to {self.record.destination[:4]}…{self.record.destination[-4:]}.",
                                   "landed", signature)
        if verdict == "unknown":
            return WithdrawalOutcome("unknown", "Sent; not confirmed yet. Check the wallet in a minute.", self.record, signature)
        err = status.err if status is not None else "expired"
        return await self._end("failed", f"It did not land ({err}).", "failed", signature)


__all__ = ["KEEP_LAMPORTS", "WithdrawalError", "WithdrawalOutcome", "Withdrawer", "build_token_transfer", "build_transfer",
           "check_withdrawal", "parse_address", "token_amount_text", "token_units"]
