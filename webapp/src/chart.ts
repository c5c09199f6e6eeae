// Interactive charts (TradingView's lightweight-charts): a position's PnL with entry, exits and strategy
// levels, and the PnL curve of past sells.
import {
  AreaSeries,
  ColorType,
  createChart,
  createSeriesMarkers,
  LineSeries,
  LineType,
  LineStyle,
  type AutoscaleInfo,
  type IChartApi,
  type SeriesMarker,
  type Time,
  type UTCTimestamp,
} from "lightweight-charts";
import { series } from "./format";

export interface ChartData {
  label: string;
  quote: string;
  samples: { t: number; pnl_pct: number; value: number }[];
  marks: { t: number; kind: string; label: string }[];
  levels: { label: string; pct: number }[];
  bands: { slippage_bps: number; max_tokens?: number; coverage_pct: number }[];
}

function css(name: string, fallback: string): string {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function base(el: HTMLElement): IChartApi {
  return createChart(el, {
    autoSize: true,
    height: 240,
    layout: {
      background: { type: ColorType.Solid, color: css("--tg-theme-bg-color", "#ffffff") },
      textColor: css("--tg-theme-text-color", "#222222"),
      attributionLogo: false,
    },
    grid: { vertLines: { visible: false }, horzLines: { color: "rgba(128,128,128,0.15)" } },
    timeScale: { timeVisible: true, secondsVisible: false },
    rightPriceScale: { borderVisible: false },
  });
}

/** Snap a time to the nearest point of the line, so a marker always shows. */
function nearest(points: { time: number }[], t: number): number {
  let best = points[0].time;
  for (const p of points) if (Math.abs(p.time - t) < Math.abs(best - t)) best = p.time;
  return best;
}

export function positionChart(el: HTMLElement, data: ChartData): IChartApi {
  const chart = base(el);
  const accent = css("--tg-theme-button-color", "#2481cc");
  const line = chart.addSeries(LineSeries, {
    color: accent,
    lineWidth: 2,
    priceFormat: { type: "custom", formatter: (v: number) => `${v.toFixed(1)}%` },
    // keep the entry and every strategy level in view, not only the PnL so far
    autoscaleInfoProvider: (original: () => AutoscaleInfo | null) => {
      const range = original();
      const prices = [0, ...data.levels.map((l) => l.pct)];
      const low = Math.min(...prices, range?.priceRange?.minValue ?? 0);
      const high = Math.max(...prices, range?.priceRange?.maxValue ?? 0);
      return { priceRange: { minValue: low, maxValue: high }, margins: range?.margins };
    },
  });
  const points = series(data.samples, (s) => s.t, (s) => s.pnl_pct);
  line.setData(points.map((p) => ({ time: p.time as UTCTimestamp, value: p.value })));
  line.createPriceLine({ price: 0, color: "#888888", lineWidth: 1, lineStyle: LineStyle.Solid, axisLabelVisible: true, title: "Entry" });
  for (const level of data.levels) {
    line.createPriceLine({
      price: level.pct,
      color: level.pct >= 0 ? "#2e9d5b" : "#d9534f",
      lineWidth: 1,
      lineStyle: LineStyle.Dashed,
      axisLabelVisible: true,
      title: level.label,
    });
  }
  if (points.length) {
    const markers: SeriesMarker<Time>[] = data.marks.map((m) => ({
      time: nearest(points, Math.floor(m.t / 1000)) as UTCTimestamp,
      position: m.kind === "sell" ? "aboveBar" : "belowBar",
      color: m.kind === "sell" ? "#d9534f" : "#f0ad4e",
      shape: m.kind === "sell" ? "arrowDown" : "circle",
      text: m.label,
    }));
    markers.sort((a, b) => (a.time as number) - (b.time as number));
    createSeriesMarkers(line, markers);
  }
  chart.timeScale().fitContent();
  return chart;
}

export function historyChart(el: HTMLElement, curve: { t: number; total_sol: number }[]): IChartApi {
  const chart = base(el);
  const area = chart.addSeries(AreaSeries, {
    lineColor: css("--tg-theme-button-color", "#2481cc"),
    topColor: "rgba(36,129,204,0.35)",
    bottomColor: "rgba(36,129,204,0.02)",
    lineType: LineType.WithSteps, // the total changes only at a sell
    priceFormat: { type: "custom", formatter: (v: number) => `${v.toFixed(3)} SOL` },
  });
  const points = series(curve, (c) => c.t, (c) => c.total_sol);
  area.setData(points.map((p) => ({ time: p.time as UTCTimestamp, value: p.value })));
  chart.timeScale().fitContent();
  return chart;
}
