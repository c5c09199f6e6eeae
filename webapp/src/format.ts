// Numbers as a trader reads them. Pure functions: tested with Vitest.

export const LAMPORTS_PER_SOL = 1_000_000_000;

export function units(amount: number | null | undefined, quote: string): string {
  if (amount === null || amount === undefined) return "–";
  const decimals = quote === "USD1" ? 6 : 9;
  const value = amount / 10 ** decimals;
  const digits = Math.abs(value) >= 100 ? 2 : 4;
  return `${value.toFixed(digits)} ${quote}`;
}

export function signedUnits(amount: number | null | undefined, quote: string): string {
  if (amount === null || amount === undefined) return "–";
  return (amount > 0 ? "+" : "") + units(amount, quote);
}

export function pct(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${value > 0 ? "+" : ""}${value.toFixed(2)}%`;
}

export function sol(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  return `${value.toFixed(4)} SOL`;
}

export function shortAddress(address: string): string {
  return address.length > 12 ? `${address.slice(0, 4)}…${address.slice(-4)}` : address;
}

export function when(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

export function untilWords(targetMs: number, nowMs: number): string {
  const left = Math.max(0, targetMs - nowMs);
  const total = Math.ceil(left / 60_000);
  const hours = Math.floor(total / 60);
  const minutes = total % 60;
  if (hours >= 1) return `${hours} h ${minutes} min`;
  return `${minutes} min`;
}

/** Points for a line chart: seconds, strictly increasing (lightweight-charts refuses equal times). */
export function series<T>(rows: T[], time: (row: T) => number, value: (row: T) => number): { time: number; value: number }[] {
  const out: { time: number; value: number }[] = [];
  for (const row of rows) {
    const t = Math.floor(time(row) / 1000);
    const point = { time: t, value: value(row) };
    if (out.length && out[out.length - 1].time >= t) out[out.length - 1] = { ...point, time: out[out.length - 1].time };
    else out.push(point);
  }
  return out;
}
