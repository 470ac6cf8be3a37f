"""Turns bench-report/{ours,peer,peer_insideout}.json into report.md (a Markdown table with
ratios) and chart.svg (latency per operation, log scale). Standard library only."""
import json, math, os, platform, sys, datetime

out = sys.argv[1] if len(sys.argv) > 1 else "bench-report"
load = lambda n: json.load(open(os.path.join(out, n)))
ours, peer, inside = load("ours.json"), load("peer.json"), load("peer_insideout.json")

ops = [
    ("get_hit_us", "get, hit"),
    ("fetch_hit_us", "fetch ~100 rows, hit"),
    ("count_hit_us", "count, hit"),
    ("get_miss_us", "get, miss"),
    ("save_inval_us", "save + invalidation"),
    ("save_noinval_us", "save, no invalidation"),
    ("get_nocache_us", "get, no cache (database)"),
    ("fetch_nocache_us", "fetch, no cache (database)"),
]
cols = [
    ("stampcache shared", lambda k: ours.get(k)),
    ("stampcache strict", lambda k: ours.get("strict_" + k, ours.get(k) if "nocache" in k else None)),
    ("stampcache tracked", lambda k: ours.get("tracked_" + k, ours.get(k) if "nocache" in k else None)),
    ("cacheops", lambda k: peer.get(k)),
    ("cacheops insideout", lambda k: inside.get(k)),
]

def fmt(v):
    return "–" if v is None else (f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}")

lines = [
    f"Measured {datetime.date.today().isoformat()} on {platform.machine()} Linux, "
    f"{os.cpu_count()} cores, PostgreSQL and Redis on the same machine "
    f"(microseconds per call, median of rounds; lower is better).",
    "",
    "| operation | " + " | ".join(c for c, _ in cols) + " | cacheops / stampcache shared |",
    "|---|" + "---:|" * (len(cols) + 1),
]
for key, label in ops:
    vals = [f(key) for _, f in cols]
    ratio = "–"
    if vals[0] and vals[3]:
        ratio = f"{vals[3] / vals[0]:.1f}x"
    lines.append(f"| {label} | " + " | ".join(fmt(v) for v in vals) + f" | {ratio} |")
lines += [
    "",
    f"Limits in the same run: a bare redis-rs `GET` of the same bytes {fmt(ours.get('bare_redis_get_us'))} us, "
    f"a bare moka `get` {fmt(ours.get('bare_moka_get_us'))} us.",
]
open(os.path.join(out, "report.md"), "w").write("\n".join(lines) + "\n")

# chart.svg: one group per operation, one bar per system, log-scale x axis.
series = [(c, f) for c, f in cols]
colors = ["#1b9e77", "#66a61e", "#7570b3", "#d95f02", "#e7298a"]
chart_ops = ops[:6]
bar_h, gap, left, width = 11, 14, 200, 560
top = 40
height = top + len(chart_ops) * (len(series) * bar_h + gap) + 60
vals = [f(k) for k, _ in chart_ops for _, f in series if f(k)]
lo = 10 ** math.floor(math.log10(min(vals)))
hi = 10 ** math.ceil(math.log10(max(vals)))
x = lambda v: left + width * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
legend_width = sum(14 + 7 * len(name) + 12 for name, _ in series)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(left + width + 40, left + legend_width)}" height="{height}" font-family="sans-serif" font-size="11">',
       '<rect width="100%" height="100%" fill="white"/>',
       f'<text x="{left}" y="20" font-size="13">Latency per call, microseconds (log scale): stampcache vs django-cacheops</text>']
d = lo
while d <= hi:
    svg.append(f'<line x1="{x(d):.1f}" y1="{top - 6}" x2="{x(d):.1f}" y2="{height - 50}" stroke="#ddd"/>')
    svg.append(f'<text x="{x(d):.1f}" y="{height - 36}" text-anchor="middle">{d:g}</text>')
    d *= 10
y = top
for key, label in chart_ops:
    svg.append(f'<text x="{left - 8}" y="{y + len(series) * bar_h / 2 + 4:.1f}" text-anchor="end">{label}</text>')
    for (name, f), color in zip(series, colors):
        v = f(key)
        if v:
            svg.append(f'<rect x="{left}" y="{y}" width="{max(1, x(v) - left):.1f}" height="{bar_h - 2}" fill="{color}"/>')
            svg.append(f'<text x="{x(v) + 3:.1f}" y="{y + bar_h - 3}" font-size="9">{fmt(v)}</text>')
        y += bar_h
    y += gap
lx = left
for (name, _), color in zip(series, colors):
    svg.append(f'<rect x="{lx}" y="{height - 22}" width="10" height="10" fill="{color}"/>')
    svg.append(f'<text x="{lx + 14}" y="{height - 13}">{name}</text>')
    lx += 14 + 7 * len(name) + 12
svg.append("</svg>")
open(os.path.join(out, "chart.svg"), "w").write("\n".join(svg) + "\n")
