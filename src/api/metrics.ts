// Counters for /metrics in the Prometheus text format.

/** A set of labelled counters, rendered as Prometheus text. */
export class Metrics {
  private readonly counters = new Map<string, { help: string; values: Map<string, number> }>();

  /** Adds `by` to the counter `name` with the given labels. */
  inc(name: string, help: string, labels: Record<string, string> = {}, by = 1): void {
    let counter = this.counters.get(name);
    if (counter === undefined) {
      counter = { help, values: new Map() };
      this.counters.set(name, counter);
    }
    const key = Object.entries(labels)
      .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`)
      .join(",");
    counter.values.set(key, (counter.values.get(key) ?? 0) + by);
  }

  /** The counters, plus gauges computed at scrape time. */
  render(gauges: { name: string; help: string; labels?: Record<string, string>; value: number }[]): string {
    const lines: string[] = [];
    for (const [name, { help, values }] of this.counters) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const [labels, value] of values) lines.push(`${name}${labels ? `{${labels}}` : ""} ${value}`);
    }
    let previous = "";
    for (const g of gauges) {
      if (g.name !== previous) lines.push(`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} gauge`);
      previous = g.name;
      const labels = Object.entries(g.labels ?? {})
        .map(([k, v]) => `${k}="${v}"`)
        .join(",");
      lines.push(`${g.name}${labels ? `{${labels}}` : ""} ${g.value}`);
    }
    return lines.join("\n") + "\n";
  }
}
