// Calls to the bot's dashboard API. Every call carries Telegram's signed initData; the bot checks it each time.

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly locked = false,
  ) {
    super(message);
  }
}

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export class Api {
  constructor(
    readonly initData: string,
    private readonly fetcher: Fetch = (input, init) => fetch(input, init),
    readonly base = "",
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Authorization: `tma ${this.initData}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetcher(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError("The bot did not answer. Check your connection and try again.", 0);
    }
    let data: unknown = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const record = (data ?? {}) as { error?: string; locked?: boolean };
      throw new ApiError(record.error ?? `The bot answered ${response.status}.`, response.status, !!record.locked);
    }
    return data as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>("POST", path, body);
  }

  eventsUrl(): string {
    return `${this.base}/api/events?initData=${encodeURIComponent(this.initData)}`;
  }
}
