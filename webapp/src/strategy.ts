// The exit strategy form: the server's validation rules, shown while the user types. The server checks
// again (POST /api/strategy/check and on save); these mirror bot/strategy.py so feedback is instant.

export interface Level {
  profit_pct: number;
  sell_pct: number;
  trailing_stop_pct: number;
}

export interface Strategy {
  take_profit_pct: number;
  stop_loss_pct: number;
  trailing_stop_pct: number;
  deadline_s: number;
  sell_on_graduation: boolean;
  liquidity_guard: boolean;
  breakeven_trail_pct: number;
  ladder: Level[];
}

export const MAX_LEVELS = 10;

function num(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(4)));
}

function checkPct(name: string, value: number, upper: number | null, allowOff: boolean, below = false): string | null {
  if (!Number.isFinite(value)) return `${name} is not a number`;
  if (allowOff && value === 0) return null;
  const tooHigh = upper !== null && (below ? value >= upper : value > upper);
  if (value <= 0 || tooHigh) {
    const allowed = upper === null ? "a number above 0" : `more than 0 and ${below ? "below" : "at most"} ${upper}`;
    return `${name} ${num(value)}% is out of range: use ${allowed}` + (allowOff ? " (0 turns it off)" : "");
  }
  return null;
}

/** The first rule the strategy breaks, in words, or null when LaserSell would accept it. */
export function problem(s: Strategy): string | null {
  const checks: (string | null)[] = [
    checkPct("take profit", s.take_profit_pct, null, true),
    checkPct("stop loss", s.stop_loss_pct, 100, true, true),
    checkPct("trailing stop", s.trailing_stop_pct, 100, true, true),
    checkPct("breakeven trail", s.breakeven_trail_pct, 100, true, true),
  ];
  for (const c of checks) if (c) return c;
  if (!Number.isInteger(s.deadline_s) || s.deadline_s < 0 || s.deadline_s > 86400) {
    return "deadline is out of range: use 0 (off) to 86400 seconds";
  }
  if (s.ladder.length > MAX_LEVELS) return `${s.ladder.length} ladder levels is too many: use at most ${MAX_LEVELS}`;
  let previous = 0;
  for (let i = 0; i < s.ladder.length; i++) {
    const level = s.ladder[i];
    const n = i + 1;
    const c =
      checkPct(`ladder level ${n} profit`, level.profit_pct, null, false) ??
      checkPct(`ladder level ${n} sell`, level.sell_pct, 100, false) ??
      checkPct(`ladder level ${n} trail`, level.trailing_stop_pct, 100, true, true);
    if (c) return c;
    if (level.profit_pct <= previous) {
      return `ladder level ${n} profit ${num(level.profit_pct)}% must be higher than the level before (${num(previous)}%)`;
    }
    if (level.sell_pct >= 100 && n < s.ladder.length) {
      return `ladder level ${n} sells 100% of what is left, so the levels after it would sell nothing`;
    }
    previous = level.profit_pct;
  }
  const last = s.ladder.length ? s.ladder[s.ladder.length - 1].profit_pct : null;
  if (last !== null && s.take_profit_pct > 0 && s.take_profit_pct <= last) {
    return `take profit +${num(s.take_profit_pct)}% would sell everything before the ladder's level at +${num(last)}%`;
  }
  if (!(s.take_profit_pct > 0 || s.stop_loss_pct > 0 || s.trailing_stop_pct > 0 || s.deadline_s > 0)) {
    return "no exit condition is on: LaserSell needs take profit, stop loss, trailing stop or a deadline above 0";
  }
  return null;
}

/** A form value as a number: empty is 0 (off), anything unreadable is NaN (reported by `problem`). */
export function readNumber(text: string): number {
  const trimmed = text.trim().replace(",", ".");
  if (trimmed === "") return 0;
  return /^-?\d*\.?\d+$/.test(trimmed) ? Number(trimmed) : NaN;
}
