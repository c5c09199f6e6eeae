// The LaserSell dashboard, opened inside Telegram. Telegram's WebApp SDK gives the signed initData and the
// theme; every call to the bot carries the initData, and the bot checks it each time.
import TelegramWebApp from "@twa-dev/sdk";
import type { IChartApi } from "lightweight-charts";
import { Api, ApiError } from "./api";
import { historyChart, positionChart, type ChartData } from "./chart";
import { field, h } from "./dom";
import { pct, shortAddress, signedUnits, sol, units, untilWords, when } from "./format";
import { problem, readNumber, type Level, type Strategy } from "./strategy";
import "./style.css";

interface Wallet {
  id: number;
  address: string;
  label: string;
  sol: number | null;
}
interface Me {
  user: { id: number; first_name: string };
  has_pin: boolean;
  wallets: Wallet[];
  pending: { kind: string; effective_at: number }[];
  now: number;
}
interface PositionRow {
  id: number;
  label: string;
  mint: string;
  quote: string;
  value: number | null;
  profit: number | null;
  pnl_pct: number | null;
  liquidity: string | null;
  waiting_exit: boolean;
}
interface Positions {
  positions: PositionRow[];
  signals: { id: string; position_id: number; reason: string; profit: number }[];
}

const PAGES = [
  ["positions", "Positions"],
  ["strategy", "Strategy"],
  ["copy", "Copy"],
  ["history", "History"],
  ["security", "Security"],
] as const;
type Page = (typeof PAGES)[number][0];

// Importing the SDK runs Telegram's telegram-web-app.js, which builds window.Telegram.WebApp from the launch
// parameters; read it from there (the package is CommonJS, and bundlers disagree on its default export).
const WebApp: typeof TelegramWebApp =
  (window as unknown as { Telegram?: { WebApp?: typeof TelegramWebApp } }).Telegram?.WebApp ?? TelegramWebApp;
const api = new Api(WebApp.initData);
const page = document.getElementById("page") as HTMLElement;
const tabs = document.getElementById("tabs") as HTMLElement;
let current: Page = "positions";
let events: EventSource | null = null;
let charts: IChartApi[] = [];
let me: Me | null = null;

function toast(text: string, bad = false): void {
  const el = document.getElementById("toast") as HTMLElement;
  el.textContent = text;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  window.setTimeout(() => (el.hidden = true), 4000);
}

function say(target: HTMLElement, text: string, bad = false): void {
  target.textContent = text;
  target.className = bad ? "note bad" : "note";
}

function failure(error: unknown): string {
  return error instanceof ApiError ? error.message : "Something went wrong; try again.";
}

function clear(): void {
  events?.close();
  events = null;
  for (const chart of charts) chart.remove();
  charts = [];
  page.replaceChildren();
  (document.getElementById("toast") as HTMLElement).hidden = true;
}

function renderTabs(): void {
  tabs.replaceChildren(
    ...PAGES.map(([id, label]) =>
      h("button", { role: "tab", "aria-selected": String(id === current), id: `tab-${id}`, onclick: () => show(id) }, label),
    ),
  );
}

async function show(next: Page): Promise<void> {
  current = next;
  renderTabs();
  clear();
  try {
    if (next === "positions") await positionsPage();
    else if (next === "strategy") await strategyPage();
    else if (next === "copy") await copyPage();
    else if (next === "history") await historyPage("7d");
    else await securityPage();
  } catch (error) {
    page.replaceChildren(h("p", { class: "note bad" }, failure(error)));
  }
}

// --- positions -------------------------------------------------------------------------------------------
async function positionsPage(): Promise<void> {
  const list = h("div", { id: "positions" }, h("p", { class: "muted" }, "Loading…"));
  const detail = h("div", { id: "detail" });
  page.append(h("h2", {}, "Open positions"), list, detail);
  const draw = (data: Positions): void => renderPositions(list, detail, data);
  draw(await api.get<Positions>("/api/positions"));
  events = new EventSource(api.eventsUrl());
  events.addEventListener("positions", (event) => draw(JSON.parse((event as MessageEvent).data) as Positions));
}

function renderPositions(list: HTMLElement, detail: HTMLElement, data: Positions): void {
  if (!data.positions.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No open positions. Buy a token and it shows up here."));
    return;
  }
  list.replaceChildren(
    ...data.positions.map((p) => {
      const pending = data.signals.filter((s) => s.position_id === p.id);
      const tone = (p.profit ?? 0) >= 0 ? "up" : "down";
      return h(
        "article",
        { class: "card", "data-position": String(p.id) },
        h("div", { class: "row" }, h("strong", {}, p.label), h("span", { class: `pnl ${tone}`, "data-pnl": "" }, pct(p.pnl_pct))),
        h("div", { class: "row muted" }, h("span", {}, `Value ${units(p.value, p.quote)}`), h("span", {}, signedUnits(p.profit, p.quote))),
        p.liquidity ? h("div", { class: "muted" }, `Liquidity ${p.liquidity}`) : null,
        ...pending.map((s) =>
          h(
            "div",
            { class: "signal" },
            h("span", {}, `Exit signal: ${s.reason.replaceAll("_", " ")}`),
            h("button", { class: "primary", onclick: () => signal(s.id, "sell") }, "✅ Sell"),
            h("button", { onclick: () => signal(s.id, "skip") }, "Skip"),
          ),
        ),
        h(
          "div",
          { class: "actions" },
          h("button", { class: "primary", onclick: () => sellNow(p.id) }, p.waiting_exit ? "Selling…" : "Sell now"),
          h("button", { onclick: () => openChart(detail, p.id) }, "Chart"),
        ),
      );
    }),
  );
}

async function sellNow(positionId: number): Promise<void> {
  try {
    toast((await api.post<{ message: string }>(`/api/positions/${positionId}/sell`)).message);
  } catch (error) {
    toast(failure(error), true);
  }
}

async function signal(id: string, action: string): Promise<void> {
  try {
    toast((await api.post<{ message: string }>(`/api/signals/${id}/${action}`)).message);
  } catch (error) {
    toast(failure(error), true);
  }
}

async function openChart(detail: HTMLElement, positionId: number): Promise<void> {
  for (const chart of charts) chart.remove();
  charts = [];
  const data = await api.get<ChartData>(`/api/positions/${positionId}/chart`);
  const box = h("div", { class: "chart", id: "position-chart" });
  const bands = h(
    "div",
    { class: "bands" },
    h("h3", {}, "Liquidity bands"),
    ...(data.bands.length
      ? data.bands.map((b) =>
          h(
            "div",
            { class: "band" },
            h("span", {}, `${(b.slippage_bps / 100).toFixed(1)}%`),
            h("div", { class: "bar" }, h("i", { style: `width:${Math.min(100, b.coverage_pct)}%` })),
            h("span", {}, `${b.coverage_pct.toFixed(0)}%`),
          ),
        )
      : [h("p", { class: "muted" }, "No liquidity snapshot yet.")]),
  );
  detail.replaceChildren(h("h3", {}, `${data.label}: PnL`), box, bands);
  charts.push(positionChart(box, data));
}

// --- strategy --------------------------------------------------------------------------------------------
async function strategyPage(): Promise<void> {
  const { strategy } = await api.get<{ strategy: Strategy; lines: string[] }>("/api/strategy");
  const number = (name: keyof Strategy, value: number, hint: string): HTMLInputElement =>
    h("input", { name, value: String(value), inputmode: "decimal", "aria-label": hint });
  const inputs = {
    take_profit_pct: number("take_profit_pct", strategy.take_profit_pct, "Take profit %"),
    stop_loss_pct: number("stop_loss_pct", strategy.stop_loss_pct, "Stop loss %"),
    trailing_stop_pct: number("trailing_stop_pct", strategy.trailing_stop_pct, "Trailing stop %"),
    breakeven_trail_pct: number("breakeven_trail_pct", strategy.breakeven_trail_pct, "Breakeven trail %"),
    deadline_s: number("deadline_s", strategy.deadline_s, "Deadline seconds"),
  };
  const graduation = h("input", { type: "checkbox", name: "sell_on_graduation", checked: strategy.sell_on_graduation });
  const guard = h("input", { type: "checkbox", name: "liquidity_guard", checked: strategy.liquidity_guard });
  const ladder = h("div", { class: "ladder" });
  const status = h("p", { id: "strategy-status", class: "note" });
  const save = h("button", { class: "primary", id: "strategy-save", type: "submit" }, "Save strategy");
  let levels: Level[] = strategy.ladder.map((l) => ({ ...l }));

  const read = (): Strategy => ({
    take_profit_pct: readNumber(inputs.take_profit_pct.value),
    stop_loss_pct: readNumber(inputs.stop_loss_pct.value),
    trailing_stop_pct: readNumber(inputs.trailing_stop_pct.value),
    breakeven_trail_pct: readNumber(inputs.breakeven_trail_pct.value),
    deadline_s: readNumber(inputs.deadline_s.value),
    sell_on_graduation: graduation.checked,
    liquidity_guard: guard.checked,
    ladder: levels,
  });
  let serverCheck = 0;
  const check = (): void => {
    const s = read();
    const wrong = problem(s);
    const ticket = ++serverCheck; // an answer to an older form is dropped
    save.disabled = wrong !== null;
    if (wrong) {
      say(status, wrong, true);
      return;
    }
    say(status, "Looks good.");
    window.setTimeout(async () => {
      if (ticket !== serverCheck) return;
      try {
        const answer = await api.post<{ ok: boolean; error?: string; lines?: string[] }>("/api/strategy/check", { strategy: read() });
        if (ticket !== serverCheck) return;
        if (!answer.ok) {
          save.disabled = true;
          say(status, answer.error ?? "Not valid.", true);
        } else say(status, (answer.lines ?? []).join(" · ") || "Looks good.");
      } catch (error) {
        say(status, failure(error), true);
      }
    }, 250);
  };
  const drawLadder = (): void => {
    ladder.replaceChildren(
      h("h3", {}, "Take-profit ladder"),
      ...levels.map((level, i) => {
        const cell = (key: keyof Level, label: string): HTMLInputElement =>
          h("input", {
            value: String(level[key]),
            inputmode: "decimal",
            "aria-label": `Level ${i + 1} ${label}`,
            oninput: (e: Event) => {
              levels[i] = { ...levels[i], [key]: readNumber((e.target as HTMLInputElement).value) };
              check();
            },
          });
        return h(
          "div",
          { class: "level" },
          h("span", {}, `${i + 1}.`),
          field("at profit %", cell("profit_pct", "profit %")),
          field("sell % of rest", cell("sell_pct", "sell %")),
          field("trail %", cell("trailing_stop_pct", "trail %")),
          h("button", { type: "button", onclick: () => ((levels = levels.filter((_, j) => j !== i)), drawLadder(), check()) }, "✕"),
        );
      }),
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            const last = levels.length ? levels[levels.length - 1].profit_pct : 0;
            levels = [...levels, { profit_pct: last + 25, sell_pct: 50, trailing_stop_pct: 0 }];
            drawLadder();
            check();
          },
        },
        "+ Add level",
      ),
    );
  };
  drawLadder();
  const form = h(
    "form",
    {
      id: "strategy-form",
      oninput: check,
      onsubmit: async (e: Event) => {
        e.preventDefault();
        try {
          const saved = await api.post<{ message: string; lines: string[] }>("/api/strategy", { strategy: read() });
          say(status, saved.message);
          toast(saved.message);
          WebApp.HapticFeedback?.notificationOccurred?.("success");
        } catch (error) {
          say(status, failure(error), true);
        }
      },
    },
    field("Take profit %", inputs.take_profit_pct, "0 turns it off"),
    field("Stop loss %", inputs.stop_loss_pct, "below 100; 0 turns it off"),
    field("Trailing stop %", inputs.trailing_stop_pct, "from the peak, once in profit"),
    field("Breakeven trail %", inputs.breakeven_trail_pct),
    field("Deadline (seconds)", inputs.deadline_s, "0 to 86400; 0 turns it off"),
    h("label", { class: "check" }, graduation, " Sell on graduation"),
    h("label", { class: "check" }, guard, " Liquidity guard"),
    ladder,
    status,
    save,
  );
  page.append(h("h2", {}, "Exit strategy"), form);
  check();
}

// --- copy trading ----------------------------------------------------------------------------------------
interface CopyWallet {
  address: string;
  nickname: string;
  amount_sol: number;
  mode: string;
  enabled: boolean;
  disabled_reason: string | null;
  stats: { copies: number; closed: number; wins: number; total: number; avg_hold_s: number | null };
}

async function copyPage(): Promise<void> {
  const data = await api.get<{ wallets: CopyWallet[] }>("/api/copy");
  page.append(h("h2", {}, "Copy trading"));
  if (!data.wallets.length) {
    page.append(h("p", { class: "muted" }, "You copy no wallets yet. Add one in the chat: /copy ADDRESS nickname"));
    return;
  }
  for (const w of data.wallets) {
    const amount = h("input", { value: String(w.amount_sol), inputmode: "decimal", "aria-label": `${w.nickname} SOL per copy` });
    const mode = h("select", { "aria-label": `${w.nickname} mode` }, h("option", { value: "ask" }, "Ask (Copy / Skip)"), h("option", { value: "auto" }, "Auto"));
    mode.value = w.mode;
    const enabled = h("input", { type: "checkbox", checked: w.enabled });
    const note = h("p", { class: "note" });
    const s = w.stats;
    page.append(
      h(
        "article",
        { class: "card" },
        h("div", { class: "row" }, h("strong", {}, w.nickname), h("span", { class: "muted" }, shortAddress(w.address))),
        h(
          "div",
          { class: "muted" },
          `${s.copies} copies · ${s.closed} closed · ${s.closed ? Math.round((100 * s.wins) / s.closed) : 0}% wins · PnL ${units(s.total, "SOL")}` +
            (s.avg_hold_s ? ` · avg hold ${Math.round(s.avg_hold_s / 60)} min` : ""),
        ),
        w.disabled_reason ? h("p", { class: "note bad" }, w.disabled_reason) : null,
        field("SOL per copy", amount),
        field("Mode", mode),
        h("label", { class: "check" }, enabled, " Copying on"),
        h(
          "button",
          {
            class: "primary",
            onclick: async () => {
              try {
                await api.post("/api/copy", { address: w.address, amount_sol: readNumber(amount.value), mode: mode.value, enabled: enabled.checked });
                say(note, "Saved.");
              } catch (error) {
                say(note, failure(error), true);
              }
            },
          },
          "Save",
        ),
        note,
      ),
    );
  }
}

// --- history ---------------------------------------------------------------------------------------------
async function historyPage(range: string): Promise<void> {
  const data = await api.get<{ curve: { t: number; total_sol: number }[]; sells: { t: number; label: string; pnl_sol: number }[]; total_sol: number; wins: number; count: number }>(
    `/api/history?range=${range}`,
  );
  const box = h("div", { class: "chart", id: "history-chart" });
  page.append(
    h("h2", {}, "History"),
    h(
      "div",
      { class: "segmented" },
      ...["1d", "7d", "30d"].map((r) => h("button", { "aria-pressed": String(r === range), onclick: () => (clear(), historyPage(r)) }, r)),
    ),
    h("p", {}, `${data.count} sells · ${data.wins} in profit · total `, h("strong", { class: data.total_sol >= 0 ? "up" : "down" }, sol(data.total_sol))),
    box,
    h("ul", { class: "sells" }, ...data.sells.slice().reverse().map((s) => h("li", {}, `${when(s.t)} ${s.label} `, h("span", { class: s.pnl_sol >= 0 ? "up" : "down" }, sol(s.pnl_sol))))),
  );
  if (data.curve.length) charts.push(historyChart(box, data.curve));
  else box.replaceWith(h("p", { class: "muted" }, "No sells in this range yet."));
}

// --- security --------------------------------------------------------------------------------------------
function pinInput(id: string, label = "PIN"): HTMLInputElement {
  return h("input", { id, type: "password", inputmode: "numeric", autocomplete: "off", "aria-label": label, placeholder: label });
}

async function securityPage(): Promise<void> {
  me = await api.get<Me>("/api/me");
  page.append(h("h2", {}, "Security"));
  page.append(pinSection(me), importSection(), walletsSection(me), await allowListSection(me), withdrawSection(me));
}

function pinSection(m: Me): HTMLElement {
  const note = h("p", { class: "note", id: "pin-note" });
  if (!m.has_pin) {
    const pin = pinInput("pin-new", "New PIN (6–12 digits)");
    const again = pinInput("pin-again", "The same PIN again");
    return h(
      "section",
      { class: "card" },
      h("h3", {}, "PIN"),
      h("p", { class: "muted" }, "A PIN protects exports, wallet removal and withdrawals. It is never sent to the chat."),
      h(
        "form",
        {
          id: "pin-form",
          onsubmit: async (e: Event) => {
            e.preventDefault();
            if (pin.value !== again.value) return say(note, "The two PINs differ. Type the same PIN twice.", true);
            try {
              say(note, (await api.post<{ message: string }>("/api/pin", { pin: pin.value })).message);
              await show("security");
            } catch (error) {
              say(note, failure(error), true);
            }
          },
        },
        pin,
        again,
        h("button", { class: "primary", type: "submit" }, "Set PIN"),
      ),
      note,
    );
  }
  const current = pinInput("pin-current", "Current PIN");
  const next = pinInput("pin-next", "New PIN");
  const pending = m.pending.map((c) => h("p", { class: "note" }, `${c.kind === "pin_remove" ? "PIN removal" : "PIN change"} takes effect ${when(c.effective_at)}.`));
  return h(
    "section",
    { class: "card" },
    h("h3", {}, "PIN ✓"),
    ...pending,
    pending.length
      ? h("button", { onclick: async () => (say(note, (await api.post<{ message: string }>("/api/pin/cancel")).message), show("security")) }, "Cancel pending change")
      : null,
    h(
      "form",
      {
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            say(note, (await api.post<{ message: string }>("/api/pin/change", { current: current.value, new: next.value })).message);
          } catch (error) {
            say(note, failure(error), true);
          }
        },
      },
      current,
      next,
      h("button", { type: "submit" }, "Change PIN (after the security delay)"),
    ),
    note,
  );
}

function importSection(): HTMLElement {
  const secret = h("textarea", { id: "import-secret", rows: 3, autocomplete: "off", spellcheck: false, placeholder: "Secret key (base58, JSON array or 12/24 words)" });
  const label = h("input", { id: "import-label", placeholder: "Name (optional)" });
  const note = h("p", { class: "note", id: "import-note" });
  return h(
    "section",
    { class: "card" },
    h("h3", {}, "Import a wallet"),
    h("p", { class: "muted" }, "The key goes straight to the bot, is sealed, and is never shown again or sent to the chat."),
    h(
      "form",
      {
        id: "import-form",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            const answer = await api.post<{ wallet: Wallet }>("/api/wallets/import", { secret: secret.value, label: label.value });
            secret.value = "";
            say(note, `Imported ${answer.wallet.label} (${shortAddress(answer.wallet.address)}).`);
          } catch (error) {
            say(note, failure(error), true);
          }
        },
      },
      secret,
      label,
      h("button", { class: "primary", type: "submit" }, "Import"),
    ),
    note,
  );
}

function walletsSection(m: Me): HTMLElement {
  return h(
    "section",
    { class: "card" },
    h("h3", {}, "Wallets"),
    ...m.wallets.map((w) => {
      const pin = pinInput(`pin-wallet-${w.id}`);
      const out = h("p", { class: "note" });
      const act = async (action: "export" | "remove"): Promise<void> => {
        try {
          const answer = await api.post<{ secret?: string; message?: string }>(`/api/wallets/${w.id}/${action}`, { pin: pin.value });
          pin.value = "";
          if (answer.secret) {
            out.replaceChildren(h("code", { class: "secret" }, answer.secret));
            out.className = "note";
          } else say(out, answer.message ?? "Done.");
        } catch (error) {
          say(out, failure(error), true);
        }
      };
      return h(
        "div",
        { class: "wallet" },
        h("div", { class: "row" }, h("strong", {}, w.label), h("span", {}, `${shortAddress(w.address)} · ${sol(w.sol)}`)),
        h("div", { class: "actions" }, pin, h("button", { onclick: () => act("export") }, "Export key"), h("button", { onclick: () => act("remove") }, "Remove")),
        out,
      );
    }),
  );
}

interface Allowed {
  id: string;
  address: string;
  label: string;
  usable_at: number;
  usable: boolean;
}

async function allowListSection(m: Me): Promise<HTMLElement> {
  const data = await api.get<{ now: number; addresses: Allowed[] }>("/api/allowlist");
  const address = h("input", { id: "allow-address", placeholder: "Solana address", autocomplete: "off" });
  const label = h("input", { id: "allow-label", placeholder: "Name" });
  const pin = pinInput("allow-pin");
  const note = h("p", { class: "note", id: "allow-note" });
  return h(
    "section",
    { class: "card", id: "allowlist" },
    h("h3", {}, "Withdrawal addresses"),
    h("p", { class: "muted" }, "A new address can be used only after the security delay; you are told in the chat."),
    h(
      "ul",
      {},
      ...data.addresses.map((a) =>
        h(
          "li",
          { "data-address": a.address },
          h("strong", {}, a.label),
          ` ${shortAddress(a.address)} `,
          h("span", { class: a.usable ? "up" : "muted" }, a.usable ? "usable" : `🔒 locked for ${untilWords(a.usable_at, data.now)} (until ${when(a.usable_at)})`),
        ),
      ),
    ),
    m.has_pin
      ? h(
          "form",
          {
            id: "allow-form",
            onsubmit: async (e: Event) => {
              e.preventDefault();
              try {
                await api.post("/api/allowlist", { address: address.value, label: label.value, pin: pin.value });
                await show("security");
              } catch (error) {
                say(note, failure(error), true);
              }
            },
          },
          address,
          label,
          pin,
          h("button", { type: "submit" }, "Add address"),
        )
      : h("p", { class: "muted" }, "Set a PIN first."),
    note,
  );
}

interface TokenHolding {
  mint: string;
  label: string | null;
  amount: string;
  decimals: number;
}

function withdrawSection(m: Me): HTMLElement {
  const wallet = h("select", { id: "withdraw-wallet", "aria-label": "From wallet" }, ...m.wallets.map((w) => h("option", { value: w.address }, `${w.label} (${sol(w.sol)})`)));
  const token = h("select", { id: "withdraw-token", "aria-label": "What to send" }, h("option", { value: "" }, "SOL"));
  const destination = h("input", { id: "withdraw-to", placeholder: "To (an address on your list)", autocomplete: "off" });
  const amount = h("input", { id: "withdraw-amount", placeholder: "SOL", inputmode: "decimal" });
  const sweep = h("input", { type: "checkbox", id: "withdraw-sweep" });
  const sweepWords = h("span", {}, " Sweep (all but what keeps the wallet open)");
  const pin = pinInput("withdraw-pin");
  const note = h("p", { class: "note", id: "withdraw-note" });
  const chosen = (): void => {
    const isToken = token.value !== "";
    amount.placeholder = isToken ? "Tokens" : "SOL";
    sweepWords.textContent = isToken ? " Sweep (the whole balance of this token)" : " Sweep (all but what keeps the wallet open)";
  };
  // the tokens the chosen wallet holds, to pick one; SOL is always offered
  const loadTokens = async (): Promise<void> => {
    token.replaceChildren(h("option", { value: "" }, "SOL"));
    chosen();
    if (!wallet.value) return;
    try {
      const data = await api.get<{ tokens: TokenHolding[] }>(`/api/tokens?wallet=${encodeURIComponent(wallet.value)}`);
      for (const t of data.tokens) {
        token.append(h("option", { value: t.mint }, `${t.label ?? shortAddress(t.mint)} (${t.amount})`));
      }
    } catch (error) {
      say(note, failure(error), true);
    }
  };
  wallet.addEventListener("change", () => void loadTokens());
  token.addEventListener("change", chosen);
  void loadTokens();
  return h(
    "section",
    { class: "card" },
    h("h3", {}, "Withdraw SOL or a token"),
    h(
      "form",
      {
        id: "withdraw-form",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          say(note, "Checking and sending…");
          try {
            const base = { wallet: wallet.value, destination: destination.value.trim(), pin: pin.value };
            const mint = token.value;
            const body = sweep.checked
              ? { ...base, sweep: true, ...(mint ? { mint } : {}) }
              : mint
                ? { ...base, mint, amount: amount.value.trim() }
                : { ...base, amount_sol: readNumber(amount.value) };
            const answer = await api.post<{ kind: string; message: string }>("/api/withdraw", body);
            pin.value = "";
            say(note, answer.message, answer.kind !== "landed");
            if (answer.kind === "landed" && mint) await loadTokens();
          } catch (error) {
            say(note, failure(error), true);
          }
        },
      },
      wallet,
      token,
      destination,
      amount,
      h("label", { class: "check" }, sweep, sweepWords),
      pin,
      h("button", { class: "primary", type: "submit" }, "Withdraw"),
    ),
    note,
  );
}

// --- start -----------------------------------------------------------------------------------------------
WebApp.ready();
WebApp.expand();
document.documentElement.dataset.scheme = WebApp.colorScheme;
const wanted = new URLSearchParams(window.location.search).get("page");
if (!WebApp.initData) {
  page.replaceChildren(h("p", { class: "note bad" }, "Open this dashboard from the bot's menu button in Telegram."));
} else {
  void show(PAGES.some(([id]) => id === wanted) ? (wanted as Page) : "positions");
}
