import { describe, expect, it } from "vitest";
import { problem, readNumber, type Strategy } from "./strategy";

const base: Strategy = {
  take_profit_pct: 50,
  stop_loss_pct: 20,
  trailing_stop_pct: 0,
  deadline_s: 0,
  sell_on_graduation: false,
  liquidity_guard: false,
  breakeven_trail_pct: 0,
  ladder: [],
};

describe("the strategy form's rules (the server's, shown while typing)", () => {
  it("accepts a plain take profit and stop loss", () => {
    expect(problem(base)).toBeNull();
  });
  it("refuses a stop loss of 100% or more", () => {
    expect(problem({ ...base, stop_loss_pct: 100 })).toMatch(/stop loss 100% is out of range: use more than 0 and below 100/);
  });
  it("refuses a strategy with no exit", () => {
    expect(problem({ ...base, take_profit_pct: 0, stop_loss_pct: 0 })).toMatch(/no exit condition/);
  });
  it("refuses ladder levels that do not rise", () => {
    const ladder = [
      { profit_pct: 50, sell_pct: 25, trailing_stop_pct: 0 },
      { profit_pct: 40, sell_pct: 50, trailing_stop_pct: 0 },
    ];
    expect(problem({ ...base, take_profit_pct: 0, ladder })).toMatch(/level 2 profit 40% must be higher than the level before \(50%\)/);
  });
  it("refuses a 100% level before the last", () => {
    const ladder = [
      { profit_pct: 20, sell_pct: 100, trailing_stop_pct: 0 },
      { profit_pct: 40, sell_pct: 50, trailing_stop_pct: 0 },
    ];
    expect(problem({ ...base, take_profit_pct: 0, ladder })).toMatch(/sells 100% of what is left/);
  });
  it("refuses a take profit at or below the ladder's top", () => {
    const ladder = [{ profit_pct: 80, sell_pct: 50, trailing_stop_pct: 0 }];
    expect(problem({ ...base, take_profit_pct: 60, ladder })).toMatch(/would sell everything before the ladder/);
  });
  it("refuses a deadline beyond a day or not whole", () => {
    expect(problem({ ...base, deadline_s: 90000 })).toMatch(/deadline/);
    expect(problem({ ...base, deadline_s: 1.5 })).toMatch(/deadline/);
  });
  it("reads empty as off and junk as not a number", () => {
    expect(readNumber("")).toBe(0);
    expect(readNumber(" 12,5 ")).toBe(12.5);
    expect(Number.isNaN(readNumber("12%"))).toBe(true);
    expect(problem({ ...base, take_profit_pct: readNumber("abc") })).toMatch(/not a number/);
  });
});
