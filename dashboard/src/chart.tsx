import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { toNanos, usd, fromNanos } from './format.ts';

const COLOURS = ['#3b5bdb', '#f08c00', '#2f9e44', '#c2255c', '#1098ad', '#7048e8', '#e8590c', '#5c940d', '#862e9c', '#495057'];

/** The last `count` UTC days, oldest first, as YYYY-MM-DD. */
export function lastDays(count: number, now = Date.now()): string[] {
  const today = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate());
  return Array.from({ length: count }, (_, index) => new Date(today - (count - 1 - index) * 86_400_000).toISOString().slice(0, 10));
}

/**
 * Daily spend by model as stacked bars (uPlot). Each series is drawn as the running total up to its model, largest
 * first, so the visible slice of each bar is that model's spend; the legend shows each model's own amount: its
 * 30-day total, or the hovered day's.
 */
export function DailySpendChart({ daily }: { daily: { date: string; model: string; cost: string }[] }) {
  const container = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const days = lastDays(30);
    const models = [...new Set(daily.map((entry) => entry.model))].sort();
    // Exact amounts (nano-dollars) for the legend; floats only for drawing.
    const ownNanos = models.map((model) =>
      days.map((day) => daily.filter((entry) => entry.model === model && entry.date === day).reduce((sum, entry) => sum + toNanos(entry.cost), 0n)),
    );
    const totals = ownNanos.map((perDay) => perDay.reduce((sum, nanos) => sum + nanos, 0n));
    const own = ownNanos.map((perDay) => perDay.map((nanos) => Number(nanos) / 1e9));
    const stacked = own.map((_, index) => days.map((__, day) => own.slice(0, index + 1).reduce((sum, values) => sum + values[day], 0) || null));
    const order = models.map((_, index) => index).reverse();
    const x = days.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
    const bars = uPlot.paths.bars!({ size: [0.7, 48] });
    // uPlot draws on a canvas in its own colours (black text): take the page's, so the axes read in dark mode too.
    const style = getComputedStyle(element);
    // The chart's content box: its width less the padding (clientWidth includes it).
    const plotWidth = () => Math.max(280, element.clientWidth - Number.parseFloat(style.paddingLeft) - Number.parseFloat(style.paddingRight));
    const text = style.color;
    const rule = style.getPropertyValue('--border').trim() || 'rgba(0,0,0,0.1)';
    const axisColours = { stroke: text, grid: { stroke: rule, width: 1 }, ticks: { stroke: rule, width: 1 } };
    const plot = new uPlot(
      {
        width: plotWidth(),
        height: 260,
        title: 'Daily spend by model (USD, last 30 days, UTC)',
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 0.01] } },
        axes: [
          { ...axisColours, space: 50 },
          { ...axisColours, values: (_u, values) => values.map((value) => `$${value}`), size: 70 },
        ],
        series: [
          // Without the cursor on a day the legend reads as the 30-day totals; on a day, that day's amounts.
          { label: 'Day', value: (_u, value) => (value == null ? '30 days' : new Date(value * 1000).toISOString().slice(0, 10)) },
          ...order.map((index) => ({
            label: models[index],
            stroke: COLOURS[index % COLOURS.length],
            fill: COLOURS[index % COLOURS.length],
            paths: bars,
            points: { show: false },
            value: (_u: uPlot, _value: number | null, _series: number, row: number | null) =>
              usd(fromNanos(row == null ? totals[index] : ownNanos[index][row])),
          })),
        ],
        legend: { live: true },
      },
      [x, ...order.map((index) => stacked[index])] as uPlot.AlignedData,
      element,
    );
    const observer = new ResizeObserver(() => plot.setSize({ width: plotWidth(), height: 260 }));
    observer.observe(element);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [daily]);
  return <div class="chart" ref={container} role="img" aria-label="Chart of daily spend by model; the same figures are in the table below it." />;
}
