import { describe, expect, it } from "vitest";
import { Api, ApiError } from "./api";

function fake(status: number, body: unknown, seen: RequestInit[] = []) {
  return async (_url: string, init?: RequestInit) => {
    seen.push(init ?? {});
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  };
}

describe("the dashboard API client", () => {
  it("sends the initData with every call", async () => {
    const seen: RequestInit[] = [];
    const api = new Api("user=1&hash=abc", fake(200, { ok: true }, seen));
    await api.post("/api/pin", { pin: "123456" });
    expect((seen[0].headers as Record<string, string>).Authorization).toBe("tma user=1&hash=abc");
    expect(seen[0].body).toBe('{"pin":"123456"}');
  });
  it("turns the bot's refusal into its words, and marks a lockout", async () => {
    const api = new Api("x", fake(423, { error: "Too many wrong PINs", locked: true }));
    const error = await api.post("/api/withdraw").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).message).toBe("Too many wrong PINs");
    expect((error as ApiError).locked).toBe(true);
  });
  it("passes the initData to the event stream in its address", () => {
    expect(new Api("a=1&b=2").eventsUrl()).toBe("/api/events?initData=a%3D1%26b%3D2");
  });
});
