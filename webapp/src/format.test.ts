import { describe, expect, it } from "vitest";
import { pct, series, shortAddress, signedUnits, units, untilWords } from "./format";

describe("numbers as a trader reads them", () => {
  it("shows SOL and USD1 amounts with their decimals", () => {
    expect(units(1_500_000_000, "SOL")).toBe("1.5000 SOL");
    expect(units(2_500_000, "USD1")).toBe("2.5000 USD1");
    expect(signedUnits(250_000_000, "SOL")).toBe("+0.2500 SOL");
    expect(units(null, "SOL")).toBe("–");
  });
  it("signs percentages", () => {
    expect(pct(12.345)).toBe("+12.35%");
    expect(pct(-3)).toBe("-3.00%");
    expect(pct(null)).toBe("–");
  });
  it("shortens addresses", () => {
    expect(shortAddress("So11111111111111111111111111111111111111112")).toBe("So11…1112");
  });
  it("says how long an address stays locked", () => {
    expect(untilWords(3_600_000 * 24, 0)).toBe("24 h 0 min");
    expect(untilWords(90_000, 0)).toBe("2 min");
    expect(untilWords(3_600_000 * 24 - 1, 0)).toBe("24 h 0 min");
  });
  it("makes chart points strictly increasing in seconds", () => {
    const rows = [{ t: 1000, v: 1 }, { t: 1500, v: 2 }, { t: 3000, v: 3 }];
    expect(series(rows, (r) => r.t, (r) => r.v)).toEqual([{ time: 1, value: 2 }, { time: 3, value: 3 }]);
  });
});
